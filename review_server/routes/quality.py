"""Station quality report (review_server/quality.py): JSON or CSV at /api/reports/quality, an HTML page at
/reports/quality. Admins and archivists (permission reports.quality); every view is audited like a protocol's."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy.orm import Session

from .. import audit
from ..quality import QualityError, QualityReport, build, to_csv
from ..roles import requires
from ..web import ApiError, db_run, identity, render
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


@routes.get("/reports/quality", allow_head=False)
@requires("reports.quality")
async def quality_page(request: web.Request) -> web.Response:
    """The report as a page: a form (day, specialty), then per task the items, agreement, discrepancies
    with video links and the cut score. ?lang=en for English."""
    q = request.query
    day, specialty = q.get("exam_day", ""), q.get("specialty", "")
    rep, error, status = None, "", 200
    if day or specialty:
        try:
            d, sp = day_and_specialty(q, "exam_day")
            rep = await _report(request, d, sp, "html")
        except ApiError as exc:
            error, status = f"{exc.error} ({exc.where})", exc.status
    context = {
        "report": rep,
        "tasks": [task.to_json() for task in rep.tasks] if rep is not None else [],
        "day": day,
        "specialty": specialty,
        "error": error,
        "csv_href": "/api/reports/quality?" + urlencode({"exam_day": day, "specialty": specialty, "format": "csv"}),
    }
    return render(request, "quality.html", context, status=status)
