"""Station health events: what the agent warned about (camera lost or frozen, microphone silent, disk low, upload
behind, agent restarted) with when it began and ended on the exam clock. The agent sends each event when it
begins and again when it ends (station_agent/health_log.py, a durable queue); the same event sent twice is
stored once, and an end only ever closes an event. The attempt page shows the events of its time. The wire
format and its checks are media/health_events.py's, shared with the agent."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from media.health_events import HealthEventError, parse_batch

from ..models import Attempt, HealthEvent
from ..roles import requires
from ..validate import Fields
from ..web import ApiError, db_run, identity, read_json
from .scope import own_station

routes = web.RouteTableDef()


@routes.put("/api/stations/{code}/health-events")
@requires("station.upload")
async def put_health_events(request: web.Request) -> web.Response:
    own_station(request, "sends only its own health events")
    who = identity(request)
    body = Fields(await read_json(request), allowed={"events"})
    try:
        events = parse_batch(body.obj.get("events"))
    except HealthEventError as exc:
        raise ApiError(422, exc.message, exc.where) from None
    station_id = who.station_id

    def store(s: Session) -> dict[str, int]:
        new = ended = 0
        for i, ev in enumerate(events):
            # Never pinned on another station's attempt. One the server does not know yet (started by hand at the
            # room PC, the day not imported) is kept as sent: the event is this station's own and is shown only
            # with this station's attempts, and refusing it would hold up every later warning of the station.
            att = s.get(Attempt, ev.attempt_id) if ev.attempt_id is not None else None
            if att is not None and att.station_id != station_id:
                raise ApiError(409, f"attempt {ev.attempt_id!r} belongs to another station",
                               f"events[{i}].attempt_id")
            row = s.scalar(select(HealthEvent).where(HealthEvent.station_id == station_id,
                                                     HealthEvent.event_id == ev.id))
            if row is None:
                s.add(HealthEvent(station_id=station_id, event_id=ev.id, attempt_id=ev.attempt_id, code=ev.code,
                                  text=ev.text, started_at=ev.started_at, ended_at=ev.ended_at))
                new += 1
            elif row.ended_at is None and ev.ended_at is not None:
                row.ended_at = ev.ended_at
                ended += 1
            s.flush()
        return {"new": new, "ended": ended, "received": len(events)}

    return web.json_response(await db_run(request, store))
