"""Station quality report (review_server/quality.py): JSON or CSV at /api/reports/quality, an HTML page at
/reports/quality. Admins and archivists (permission reports.quality); every view is audited like a protocol's."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy.orm import Session

from .. import audit
from ..quality import QualityError, QualityReport, build, to_csv
from ..roles import requires
from ..web import ApiError, db_run, identity
from .params import day_and_specialty

routes = web.RouteTableDef()
QUALITY_VIEW = "report.quality.view"


async def _report(request: web.Request, day: dt.date, specialty: str, fmt: str) -> QualityReport:
    who = identity(request)

    def make(s: Session) -> QualityReport:
        try:
            rep = build(s, day, specialty)
        except QualityError as exc:
            raise ApiError(404, str(exc), exc.where) from None
        audit.append(s, who.actor, QUALITY_VIEW, f"quality:{day.isoformat()}:{specialty}", {"format": fmt})
        return rep

    return await db_run(request, make)


@routes.get("/api/reports/quality", allow_head=False)
@requires("reports.quality")
async def quality_api(request: web.Request) -> web.Response:
    """?exam_day=YYYY-MM-DD&specialty=CODE[&format=json|csv]"""
    day, specialty = day_and_specialty(request.query, "exam_day")
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiError(400, "expected json or csv", "query format")
    rep = await _report(request, day, specialty, fmt)
    if fmt == "json":
        return web.json_response(rep.to_json())
    name = f"quality-{day.isoformat()}-{specialty}.csv"
    return web.Response(
        body=to_csv(rep),
        headers={"Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{name}"'},
    )


TEXT = {
    "ru": {
        "title": "Качество станций",
        "day": "Дата экзамена",
        "specialty": "Специальность",
        "show": "Показать",
        "csv": "Скачать CSV",
        "checklist": "Чек-лист",
        "version": "версия",
        "stations": "Станции",
        "attempts": "Попыток",
        "sheets": "подписанных листов",
        "not_final": "не подписано (не учтены)",
        "double": "оценены двумя и более",
        "item": "№",
        "action": "Действие",
        "done": "Выполнено",
        "pairs": "Пар листов",
        "agree": "Согласие, %",
        "kappa": "Каппа Коэна",
        "pairs_title": "Согласие членов комиссии (все пункты)",
        "disc": "Расхождения",
        "none": "Расхождений нет",
        "number": "Номер аккредитуемого",
        "station": "Станция",
        "what": "Что",
        "marks": "Отметки",
        "video": "Видео",
        "watch": "смотреть",
        "score_kind": "баллы расходятся больше чем на 20",
        "cut": "Граничная оценка (регрессия по пограничной группе)",
        "cut_none": "Глобальная оценка не выставлялась или недостаточно данных",
        "no_scale": "В чек-листе нет глобальной оценки",
        "cut_text": "Порог по регрессии: {cut:.1f} % (оценка «пограничный» = {b:g}; n = {n}; "
        "наклон {slope:.2f}; R² {r2}) — фиксированный порог {fixed:.0f} %",
        "unscored": "Не учтены попытки",
        "yes": "да",
        "no": "нет",
        "other": "English",
    },
    "en": {
        "title": "Station quality",
        "day": "Exam day",
        "specialty": "Specialty",
        "show": "Show",
        "csv": "Download CSV",
        "checklist": "Checklist",
        "version": "version",
        "stations": "Stations",
        "attempts": "Attempts",
        "sheets": "finalised sheets",
        "not_final": "not finalised (left out)",
        "double": "marked by two or more",
        "item": "No.",
        "action": "Action",
        "done": "Done",
        "pairs": "Sheet pairs",
        "agree": "Agreement, %",
        "kappa": "Cohen's kappa",
        "pairs_title": "Examiner agreement (all items)",
        "disc": "Discrepancies",
        "none": "No discrepancies",
        "number": "Accreditation number",
        "station": "Station",
        "what": "What",
        "marks": "Marks",
        "video": "Video",
        "watch": "watch",
        "score_kind": "scores more than 20 points apart",
        "cut": "Cut score (borderline regression)",
        "cut_none": "No global ratings given, or too few",
        "no_scale": "The checklist has no global rating",
        "cut_text": "Regression cut score: {cut:.1f} % (borderline grade = {b:g}; n = {n}; slope {slope:.2f}; "
        "R² {r2}) — fixed threshold {fixed:.0f} %",
        "unscored": "Attempts left out",
        "yes": "yes",
        "no": "no",
        "other": "Русский",
    },
}

STYLE = (
    "body{font-family:sans-serif;margin:1rem;max-width:70rem}table{border-collapse:collapse;width:100%;"
    "margin:.5rem 0 1rem}td,th{border:1px solid #bbb;padding:.3rem .4rem;text-align:left;vertical-align:top}"
    "td.n{text-align:right;white-space:nowrap}.low{background:#fde2e2}input,button{font-size:1rem;padding:.3rem}"
    "a.video{white-space:nowrap}"
)


def _f(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def render(rep: QualityReport | None, lang: str, day: str, specialty: str, error: str = "") -> str:
    t = TEXT[lang]
    other = "en" if lang == "ru" else "ru"
    query = {"exam_day": day, "specialty": specialty}
    parts = [
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(t['title'])}</title><style>{STYLE}</style></head><body>",
        f'<p><a href="?{escape(urlencode(query | {"lang": other}))}">{t["other"]}</a></p>',
        f"<h1>{escape(t['title'])}</h1>",
        f'<form method="get"><input type="hidden" name="lang" value="{lang}">'
        f'<label>{t["day"]} <input type="date" name="exam_day" value="{escape(day)}" required></label> '
        f'<label>{t["specialty"]} <input name="specialty" value="{escape(specialty)}" required></label> '
        f'<button type="submit">{t["show"]}</button></form>',
    ]
    if error:
        parts.append(f'<p role="alert">{escape(error)}</p>')
    if rep is not None:
        csv_q = urlencode(query | {"format": "csv"})
        parts.append(f'<p>{escape(rep.specialty_name)} · {rep.day.strftime("%d.%m.%Y")} · '
                     f'<a href="/api/reports/quality?{escape(csv_q)}">{t["csv"]}</a></p>')
        for task in rep.tasks:
            parts.append(_task_html(task.to_json(), t))
        if rep.unscored:
            items = "".join(f"<li>{escape(u['attempt_id'])}: {escape(u['why'])}</li>" for u in rep.unscored)
            parts.append(f"<h2>{t['unscored']}</h2><ul>{items}</ul>")
    parts.append("</body></html>")
    return "".join(parts)


def _task_html(j: dict[str, Any], t: dict[str, str]) -> str:
    cl = j["checklist"]
    out = [
        f"<h2>{escape(j['task'])}: {escape(j['task_title'])}</h2>",
        f"<p>{t['checklist']}: {escape(cl['title'])} ({t['version']} {escape(cl['version'])}) · "
        f"{t['stations']}: {escape(', '.join(j['stations']))} · {t['attempts']}: {j['attempts']} · "
        f"{j['sheets']} {t['sheets']} · {j['sheets_not_final']} {t['not_final']} · "
        f"{j['double_marked_attempts']} {t['double']}</p>",
        f"<table><thead><tr><th>{t['item']}</th><th>{t['action']}</th><th>{t['done']}</th><th>{t['pairs']}</th>"
        f"<th>{t['agree']}</th><th>{t['kappa']}</th></tr></thead><tbody>",
    ]
    for it in j["items"]:
        low = ' class="low"' if it["kappa"] is not None and it["kappa"] < 0.4 else ""
        share = "—" if it["done_share"] is None else f"{100 * it['done_share']:.0f} % ({it['done']}/{it['sheets']})"
        out.append(
            f"<tr{low}><td class=n>{it['item']}</td><td>{escape(it['action'])}</td><td class=n>{share}</td>"
            f"<td class=n>{it['pairs']}</td><td class=n>{_f(it['agreement_percent'], '.0f')}</td>"
            f"<td class=n>{_f(it['kappa'], '.2f')}</td></tr>"
        )
    out.append("</tbody></table>")
    if j["examiner_pairs"]:
        rows = "".join(
            f"<li>{escape(' — '.join(p['examiners']))}: κ = {_f(p['kappa'], '.2f')}</li>" for p in j["examiner_pairs"]
        )
        out.append(f"<h3>{t['pairs_title']}</h3><ul>{rows}</ul>")
    out.append(f"<h3>{t['disc']}</h3>")
    if not j["discrepancies"]:
        out.append(f"<p>{t['none']}</p>")
    else:
        out.append(
            f"<table><thead><tr><th>{t['number']}</th><th>{t['station']}</th><th>{t['what']}</th>"
            f"<th>{t['marks']}</th><th>{t['video']}</th></tr></thead><tbody>"
        )
        for d in j["discrepancies"]:
            what = f"{d['item']}. {escape(d['action'])}" if d["kind"] == "item" else t["score_kind"]
            marks = ", ".join(
                f"{escape(ex)}: {t['yes'] if v is True else t['no'] if v is False else escape(f'{v} %')}"
                for ex, v in d["marks"].items()
            )
            out.append(
                f"<tr><td>{escape(d['accreditation_number'] or '—')}</td><td>{escape(d['station'])}</td>"
                f"<td>{what}</td><td>{marks}</td>"
                f'<td><a class="video" href="{escape(d["link"])}">{t["watch"]} ▶ {d["link"].rsplit("=", 1)[1]} s'
                f"</a></td></tr>"
            )
        out.append("</tbody></table>")
    out.append(f"<h3>{t['cut']}</h3>")
    cut = j["cut_score"]
    if j["global_rating"] is None:
        out.append(f"<p>{t['no_scale']}</p>")
    elif cut is None:
        out.append(f"<p>{t['cut_none']}</p>")
    else:
        r2 = "—" if cut["r2"] is None else f"{cut['r2']:.2f}"
        out.append(
            "<p>"
            + escape(
                t["cut_text"].format(
                    cut=cut["cut_percent"],
                    b=cut["borderline_grade"],
                    n=cut["sheets"],
                    slope=cut["slope"],
                    r2=r2,
                    fixed=cut["fixed_percent"],
                )
            )
            + "</p>"
        )
    return "".join(out)


@routes.get("/reports/quality", allow_head=False)
@requires("reports.quality")
async def quality_page(request: web.Request) -> web.Response:
    """The report as a page: a form (day, specialty), then per task the items, agreement, discrepancies
    with video links and the cut score. ?lang=en for English."""
    q = request.query
    lang = "en" if q.get("lang") == "en" else "ru"
    day, specialty = q.get("exam_day", ""), q.get("specialty", "")
    rep, error, status = None, "", 200
    if day or specialty:
        try:
            d, sp = day_and_specialty(q, "exam_day")
            rep = await _report(request, d, sp, "html")
        except ApiError as exc:
            error, status = f"{exc.error} ({exc.where})", exc.status
    return web.Response(text=render(rep, lang, day, specialty, error), content_type="text/html", status=status)
