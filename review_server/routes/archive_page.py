"""GET /archive: the archivist's search page over the archive search across days (review_server/search.py, the
same query and checks as GET /api/archive/attempts), rendered on the server (templates/archive.html): a GET
form, a page of results, each linking to its attempt page, and previous/next links. Russian first, ?lang=en
English; accreditation numbers only; tasks by their titles (the code is the cell's tooltip).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..i18n import lang_of, section
from ..models import Specialty, Station, Task
from ..roles import requires
from ..search import RESULTS, search
from ..web import ApiError, db_run, render
from .search import parse_query

routes = web.RouteTableDef()
PER_PAGE = 50
FIELDS = ("from", "to", "specialty", "station", "task", "number", "result", "examiner")


def _labelled(rows: Any) -> list[tuple[str, str]]:
    return [(code, code if not name or name == code else f"{code} — {name}") for code, name in rows]


def _choices(s: Session) -> dict[str, list[tuple[str, str]]]:
    return {
        "specialty": _labelled(s.execute(select(Specialty.code, Specialty.name).order_by(Specialty.code))),
        "station": _labelled(s.execute(select(Station.code, Station.name).order_by(Station.code))),
        "task": [(c, n or c) for c, n in s.execute(select(Task.code, Task.title).order_by(Task.title))],
    }


@routes.get("/archive", allow_head=False)
@requires("archive.search")
async def archive_page(request: web.Request) -> web.Response:
    lang = lang_of(request)
    params = {k: v.strip() for k, v in request.query.items() if v.strip()}
    error, status, query = None, 200, None
    try:
        query = parse_query(params, also=frozenset({"lang"}), per_page=PER_PAGE)  # the API's checks
    except ApiError as exc:
        error, status = exc, 400

    def q(s: Session) -> tuple[dict[str, list[tuple[str, str]]], dict[str, Any] | None]:
        return _choices(s), (search(s, query) if query is not None else None)  # no filter: the newest attempts

    choices, found = await db_run(request, q)
    keep = {k: v for k, v in params.items() if k in FIELDS} | {"lang": lang}
    context = {
        "params": params,
        "choices": choices,
        "results": [(r, section(lang, "archive")[r]) for r in RESULTS],
        "tasks": dict(choices["task"]),
        "error": error,
        "found": found,
        "page_href": lambda page: "/archive?" + urlencode(keep | {"page": page}),
    }
    return render(request, "archive.html", context, status=status)
