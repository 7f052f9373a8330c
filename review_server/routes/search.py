"""GET /api/archive/attempts: the archive search across days (review_server/search.py). parse_query is also the
check of the archive page's form (routes/archive_page.py)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from ..roles import requires
from ..search import MAX_PER_PAGE, RESULTS, Query, search
from ..validate import ACCRED_RE, check_text
from ..web import ApiError, db_run
from .params import date_param, ident_param, int_param

routes = web.RouteTableDef()

KNOWN = frozenset({"from", "to", "specialty", "station", "task", "number", "result", "examiner", "page", "per_page"})


def parse_query(q: Mapping[str, str], *, also: frozenset[str] = frozenset(), per_page: int | None = None) -> Query:
    """The search query from query parameters, or an ApiError(400) naming the parameter that is wrong.
    `also`: further parameters the caller handles itself (the page's lang); `per_page`: a fixed page size,
    in which case the per_page parameter is accepted but not read."""
    unknown = sorted(set(q) - KNOWN - also)
    if unknown:
        raise ApiError(400, f"unknown parameter (known: {', '.join(sorted(KNOWN))})", f"query {unknown[0]}")
    result = q.get("result")
    if result is not None and result not in RESULTS:
        raise ApiError(400, f"expected one of {', '.join(RESULTS)}", "query result")
    examiner = q.get("examiner")
    if examiner is not None:
        check_text(examiner, "query examiner", 128)
    return Query(
        date_from=date_param(q, "from"),
        date_to=date_param(q, "to"),
        specialty=ident_param(q, "specialty"),
        station=ident_param(q, "station"),
        task=ident_param(q, "task"),
        number=ident_param(q, "number", ACCRED_RE),
        result=result,
        examiner=examiner,
        page=int_param(q, "page", 1, 100_000),
        per_page=per_page if per_page is not None else int_param(q, "per_page", 50, MAX_PER_PAGE),
    )


@routes.get("/api/archive/attempts", allow_head=False)
@requires("archive.search")
async def search_attempts(request: web.Request) -> web.Response:
    """?from=&to= (exam dates), specialty, station, task (codes), number, result (passed|failed|not_final),
    examiner (login), page, per_page (≤ 200). Newest exam day first; `has_more` says whether a next page exists."""
    query = parse_query(request.query)
    return web.json_response(await db_run(request, lambda s: search(s, query)))
