"""The exam clock: each station fetches its part of the day's schedule with the server's time.

All rooms compute their phase (reading, performing, done) from the same start times and correct
for their own clock's offset from `server_time`, so they run in lockstep (contract:
station_agent/lifecycle.py parse_schedule).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aiohttp import web

from ..roles import requires
from ..web import CONFIG, ApiError
from .scope import own_station

routes = web.RouteTableDef()


def _day_attempts(request: web.Request) -> list[dict[str, Any]]:
    path = request.app[CONFIG].schedule_file
    if path is None:
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ApiError(503, f"the exam schedule cannot be read: {exc}", str(path)) from None
    attempts = data.get("attempts") if isinstance(data, dict) else None
    if not isinstance(attempts, list):
        raise ApiError(503, "the exam schedule has no 'attempts' list", str(path))
    return [a for a in attempts if isinstance(a, dict)]


@routes.get("/api/stations/{code}/schedule", allow_head=False)
@requires("station.schedule")
async def station_schedule(request: web.Request) -> web.Response:
    code = own_station(request, "reads only its own schedule")
    attempts = [a for a in _day_attempts(request) if a.get("station_id") == code]
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    return web.json_response({"server_time": now, "attempts": attempts})
