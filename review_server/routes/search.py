"""GET /api/archive/attempts: the archive search across days (review_server/search.py). Registered through
routes/archive.py (ROUTES below)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from aiohttp import web

from ..app import ApiError, db_run
from ..roles import requires
from ..search import MAX_PER_PAGE, RESULTS, Query, search
from ..validate import ACCRED_RE, CODE_RE, check_text

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INT = re.compile(r"[0-9]{1,6}")
KNOWN = {"from", "to", "specialty", "station", "task", "number", "result", "examiner", "page", "per_page"}


def _date(q: Any, name: str) -> dt.date | None:
    value = q.get(name)
    if value is None:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "expected a date YYYY-MM-DD", f"query {name}") from None


def _int(q: Any, name: str, default: int, hi: int) -> int:
    value = q.get(name)
    if value is None:
        return default
    if not _INT.fullmatch(value) or not 1 <= int(value) <= hi:
        raise ApiError(400, f"expected an integer from 1 to {hi}", f"query {name}")
    return int(value)


def _ident(q: Any, name: str, pattern: re.Pattern[str] = CODE_RE) -> str | None:
    value = q.get(name)
    if value is not None and not pattern.fullmatch(value):
        raise ApiError(400, f"must match {pattern.pattern}", f"query {name}")
    return value


@requires("archive.search")
async def search_attempts(request: web.Request) -> web.Response:
    """?from=&to= (exam dates), specialty, station, task (codes), number, result (passed|failed|not_final),
    examiner (login), page, per_page (≤ 200). Newest exam day first; `has_more` says whether a next page exists."""
    q = request.query
    unknown = sorted(set(q) - KNOWN)
    if unknown:
        raise ApiError(400, f"unknown parameter (known: {', '.join(sorted(KNOWN))})", f"query {unknown[0]}")
    result = q.get("result")
    if result is not None and result not in RESULTS:
        raise ApiError(400, f"expected one of {', '.join(RESULTS)}", "query result")
    examiner = q.get("examiner")
    if examiner is not None:
        check_text(examiner, "query examiner", 128)
    query = Query(
        date_from=_date(q, "from"),
        date_to=_date(q, "to"),
        specialty=_ident(q, "specialty"),
        station=_ident(q, "station"),
        task=_ident(q, "task"),
        number=_ident(q, "number", ACCRED_RE),
        result=result,
        examiner=examiner,
        page=_int(q, "page", 1, 100_000),
        per_page=_int(q, "per_page", 50, MAX_PER_PAGE),
    )
    return web.json_response(await db_run(request, lambda s: search(s, query)))


ROUTES: list[tuple[str, str, Any]] = [("GET", "/api/archive/attempts", search_attempts)]
