"""A station's status report (format: media/station_status.py), sent by its agent every few seconds
(station_agent/status_report.py): the last one is kept per station, as checked, for the centre console's stations
board (review_server/stations_board.py)."""

from __future__ import annotations

import json

from aiohttp import web
from sqlalchemy.orm import Session

from media.station_status import StatusError, parse

from ..models import StationStatus, utcnow
from ..roles import requires
from ..web import ApiError, db_run, identity, read_json
from .scope import own_station

routes = web.RouteTableDef()


@routes.put("/api/stations/{code}/status")
@requires("station.upload")
async def put_status(request: web.Request) -> web.Response:
    own_station(request, "reports only its own status")
    try:
        report = parse(await read_json(request))
    except StatusError as exc:
        raise ApiError(422, exc.message, exc.where) from None
    station_id = identity(request).station_id
    assert station_id is not None  # a station token

    def store(s: Session) -> None:
        row = s.get(StationStatus, station_id)
        if row is None:
            row = StationStatus(station_id=station_id)
            s.add(row)
        row.report, row.received_at = json.dumps(report, ensure_ascii=False), utcnow()

    await db_run(request, store)
    return web.json_response({"ok": True})
