"""Station health events: what the agent warned about (camera lost or frozen, microphone silent, disk low, upload
behind, agent restarted) with when it began and ended on the exam clock. The agent sends each event when it
begins and again when it ends (station_agent/health_log.py, a durable queue); the same event sent twice is
stored once, and an end only ever closes an event. The attempt page shows the events of its time."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Attempt, HealthEvent
from ..roles import requires
from ..validate import Fields, parse_utc
from ..web import ApiError, db_run, identity, read_json
from .scope import own_station

routes = web.RouteTableDef()

MAX_EVENTS = 200  # per request; the agent sends its backlog in batches
EVENT_FIELDS = {"id", "code", "text", "attempt_id", "started_at", "ended_at"}


def _event(obj: Any, where: str) -> dict[str, Any]:
    f = Fields(obj, where, allowed=EVENT_FIELDS)
    ev = {
        "id": f.ident("id"),
        "code": f.ident("code"),
        "text": f.text("text", max_len=300),
        "attempt_id": f.ident("attempt_id", required=False),
        "started_at": parse_utc(f.utc_time("started_at")),
        "ended_at": None,
    }
    if obj.get("ended_at") is not None:
        ev["ended_at"] = parse_utc(f.utc_time("ended_at"))
        if ev["ended_at"] < ev["started_at"]:
            raise ApiError(422, "ends before it starts", f.where("ended_at"))
    return ev


@routes.put("/api/stations/{code}/health-events")
@requires("station.upload")
async def put_health_events(request: web.Request) -> web.Response:
    own_station(request, "sends only its own health events")
    who = identity(request)
    body = Fields(await read_json(request), allowed={"events"})
    items = body.obj.get("events")
    if not isinstance(items, list) or len(items) > MAX_EVENTS:
        raise ApiError(422, f"expected a list of at most {MAX_EVENTS} events", "events")
    events = [_event(obj, f"events[{i}]") for i, obj in enumerate(items)]
    station_id = who.station_id

    def store(s: Session) -> dict[str, int]:
        new = ended = 0
        for i, ev in enumerate(events):
            # Never pinned on another station's attempt. One the server does not know yet (started by hand at the
            # room PC, the day not imported) is kept as sent: the event is this station's own and is shown only
            # with this station's attempts, and refusing it would hold up every later warning of the station.
            att = s.get(Attempt, ev["attempt_id"]) if ev["attempt_id"] is not None else None
            if att is not None and att.station_id != station_id:
                raise ApiError(409, f"attempt {ev['attempt_id']!r} belongs to another station",
                               f"events[{i}].attempt_id")
            row = s.scalar(select(HealthEvent).where(HealthEvent.station_id == station_id,
                                                     HealthEvent.event_id == ev["id"]))
            if row is None:
                s.add(HealthEvent(station_id=station_id, event_id=ev["id"], attempt_id=ev["attempt_id"],
                                  code=ev["code"], text=ev["text"], started_at=ev["started_at"],
                                  ended_at=ev["ended_at"]))
                new += 1
            elif row.ended_at is None and ev["ended_at"] is not None:
                row.ended_at = ev["ended_at"]
                ended += 1
            s.flush()
        return {"new": new, "ended": ended, "received": len(events)}

    return web.json_response(await db_run(request, store))
