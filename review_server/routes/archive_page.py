"""GET /archive: the archivist's search page over the archive search across days (review_server/search.py, the
same query and checks as GET /api/archive/attempts), rendered on the server: a GET form, a page of results, each
linking to its attempt page, and previous/next links. Russian first, ?lang=en English; accreditation numbers only.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Specialty, Station, Task
from ..pages import lang_of
from ..roles import requires
from ..search import RESULTS, search
from ..web import ApiError, db_run
from .attempt_page import asset
from .search import parse_query

routes = web.RouteTableDef()
PER_PAGE = 50
e = html.escape

TEXT: dict[str, dict[str, str]] = {
    "ru": {
        "title": "Архив попыток",
        "from": "С даты",
        "to": "По дату",
        "specialty": "Специальность",
        "station": "Станция",
        "task": "Задание",
        "number": "Номер аккредитуемого",
        "result": "Результат",
        "examiner": "Член комиссии (логин)",
        "any": "любой",
        "passed": "сдано",
        "failed": "не сдано",
        "not_final": "не подписано",
        "find": "Найти",
        "attempt": "Попытка",
        "day": "День",
        "percent": "%",
        "final": "Подписано",
        "yes": "да",
        "no": "нет",
        "nothing": "Ничего не найдено.",
        "prev": "← Предыдущие",
        "next": "Следующие →",
        "page": "Страница",
        "other": "English",
        "error": "Ошибка в запросе",
    },
    "en": {
        "title": "Attempt archive",
        "from": "From",
        "to": "To",
        "specialty": "Specialty",
        "station": "Station",
        "task": "Task",
        "number": "Candidate number",
        "result": "Result",
        "examiner": "Examiner (login)",
        "any": "any",
        "passed": "passed",
        "failed": "failed",
        "not_final": "not signed",
        "find": "Search",
        "attempt": "Attempt",
        "day": "Day",
        "percent": "%",
        "final": "Signed",
        "yes": "yes",
        "no": "no",
        "nothing": "Nothing found.",
        "prev": "← Previous",
        "next": "Next →",
        "page": "Page",
        "other": "Русский",
        "error": "Error in the query",
    },
}
RESULT_EN = {"сдано": "passed", "не сдано": "failed"}
FIELDS = ("from", "to", "specialty", "station", "task", "number", "result", "examiner")


def _choices(s: Session) -> dict[str, list[tuple[str, str]]]:
    return {
        "specialty": [(c, n) for c, n in s.execute(select(Specialty.code, Specialty.name).order_by(Specialty.code))],
        "station": [(c, n or c) for c, n in s.execute(select(Station.code, Station.name).order_by(Station.code))],
        "task": [(c, n) for c, n in s.execute(select(Task.code, Task.title).order_by(Task.code))],
    }


def _select(name: str, options: list[tuple[str, str]], chosen: str, t: dict[str, str]) -> str:
    opts = [f'<option value="">{e(t["any"])}</option>']
    for value, label in options:
        sel = " selected" if value == chosen else ""
        text = value if label == value else f"{value} — {label}"
        opts.append(f'<option value="{e(value)}"{sel}>{e(text)}</option>')
    return f'<label>{e(t[name])}<select name="{name}">{"".join(opts)}</select></label>'


def _form(params: dict[str, str], choices: dict[str, list[tuple[str, str]]], lang: str, t: dict[str, str]) -> str:
    def text_input(name: str, kind: str = "text") -> str:
        return (f'<label>{e(t[name])}<input type="{kind}" name="{name}" value="{e(params.get(name, ""))}">'
                "</label>")

    results = [(r, t[r]) for r in RESULTS]
    return (
        f'<form class="search" method="get" action="/archive"><input type="hidden" name="lang" value="{lang}">'
        f'{text_input("from", "date")}{text_input("to", "date")}'
        f'{_select("specialty", choices["specialty"], params.get("specialty", ""), t)}'
        f'{_select("station", choices["station"], params.get("station", ""), t)}'
        f'{_select("task", choices["task"], params.get("task", ""), t)}'
        f'{text_input("number")}{_select("result", results, params.get("result", ""), t)}'
        f'{text_input("examiner")}<button type="submit">{e(t["find"])}</button></form>'
    )


def _results(found: dict[str, Any], params: dict[str, str], lang: str, t: dict[str, str]) -> str:
    rows = []
    for a in found["attempts"]:
        percent = "" if a["percent"] is None else f"{a['percent']:.1f}"
        if lang == "ru":
            percent = percent.replace(".", ",")
        result = a["result"] or "—"
        if lang == "en":
            result = RESULT_EN.get(result, result)
        href = f"/attempts/{e(a['attempt_id'])}?lang={lang}"
        rows.append(
            f'<tr data-attempt="{e(a["attempt_id"])}"><td><a href="{href}">{e(a["attempt_id"])}</a></td>'
            f'<td>{e(a["exam_day"] or "—")}</td><td>{e(a["station"] or "—")}</td><td>{e(a["task"] or "—")}</td>'
            f'<td>{e(a["accreditation_number"] or "—")}</td><td>{percent}</td><td>{e(result)}</td>'
            f'<td>{e(t["yes"] if a["final"] else t["no"])}</td></tr>'
        )
    if not rows:
        return f'<p class="nothing">{e(t["nothing"])}</p>'
    head = "".join(
        f"<th>{e(t[k])}</th>" for k in ("attempt", "day", "station", "task", "number", "percent", "result", "final")
    )
    keep = {k: v for k, v in params.items() if k in FIELDS} | {"lang": lang}
    nav = []
    page = found["page"]
    if page > 1:
        nav.append(f'<a rel="prev" href="/archive?{e(urlencode(keep | {"page": page - 1}))}">{e(t["prev"])}</a>')
    nav.append(f"{e(t['page'])} {page}")
    if found["has_more"]:
        nav.append(f'<a rel="next" href="/archive?{e(urlencode(keep | {"page": page + 1}))}">{e(t["next"])}</a>')
    return (f'<table class="results"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f'<p class="pages">{" · ".join(nav)}</p>')


@routes.get("/archive", allow_head=False)
@requires("archive.search")
async def archive_page(request: web.Request) -> web.Response:
    lang = lang_of(request.query.get("lang"))
    t = TEXT[lang]
    params = {k: v.strip() for k, v in request.query.items() if v.strip()}
    error, status, query = "", 200, None
    try:
        query = parse_query(params, also=frozenset({"lang"}), per_page=PER_PAGE)  # the API's checks
    except ApiError as exc:
        error, status = f'<p class="error" role="alert">{e(t["error"])}: {e(exc.where or "")}: {e(exc.error)}</p>', 400

    def q(s: Session) -> tuple[dict[str, list[tuple[str, str]]], dict[str, Any] | None]:
        return _choices(s), (search(s, query) if query is not None else None)  # no filter: the newest attempts

    choices, found = await db_run(request, q)
    other = "en" if lang == "ru" else "ru"
    body = (
        f'<header><h1>{e(t["title"])}</h1><p><a href="/archive?{e(urlencode({**params, "lang": other}))}">'
        f'{e(t["other"])}</a></p></header><main class="archive"><div>{_form(params, choices, lang, t)}{error}'
        f'{_results(found, params, lang, t) if found is not None else ""}</div></main>'
    )
    page = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{e(t["title"])}</title><link rel="icon" href="data:,">'
        f'<style>{asset("review.css")}</style></head><body>{body}</body></html>'
    )
    return web.Response(text=page, content_type="text/html", status=status)
