"""The examiner's home (`GET /examiner`, where an examiner lands): today's stations assigned to them with each
room's live state and one link to mark it in the observation room (`/live?station=CODE` opens it enlarged with its
sheet), their sheets still to sign, and the attempts they marked (links to each attempt's review page). The
stations' rows follow the rooms by themselves (`GET /examiner/stations`, static/pages/refresh.js)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from .. import examiner_day
from ..roles import requires
from ..web import db_run, identity, render
from .console import NO_STORE, centre_today

routes = web.RouteTableDef()


@routes.get("/examiner", allow_head=False)
@requires("examiner.day")
async def examiner_page(request: web.Request) -> web.Response:
    who, today = identity(request), centre_today(request)

    def q(s: Session) -> dict[str, Any]:
        return {"stations": examiner_day.stations_today(s, who.user_id, today),  # type: ignore[arg-type]
                "unsigned": examiner_day.unsigned(s, who.login),  # type: ignore[arg-type]
                "marked": examiner_day.marked(s, who.login)}  # type: ignore[arg-type]

    context = await db_run(request, q) | {"today": today}
    return render(request, "examiner.html", context, headers=NO_STORE)


@routes.get("/examiner/stations", allow_head=False)
@requires("examiner.day")
async def examiner_stations(request: web.Request) -> web.Response:
    who, today = identity(request), centre_today(request)
    rows = await db_run(request, lambda s: examiner_day.stations_today(s, who.user_id, today))  # type: ignore[arg-type]
    return render(request, "_examiner_stations.html", {"stations": rows}, headers=NO_STORE)
