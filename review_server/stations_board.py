"""The centre console's stations board: each station as its agent last reported it (media/station_status.py,
stored by routes/station_status.py), with what the server itself knows: whether the agent still reports (online),
the station's open health warnings with since when (routes/health_events.py), its last upload received, and how
far the station's clock was from the server's when the report came. No aiohttp here: the page and its live
fragment (routes/console.py) render these rows."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from media.station_status import INTERVAL_S, TOP

from .models import Fragment, HealthEvent, Recording, Station, StationStatus, utcnow

OFFLINE_AFTER_S = 3 * INTERVAL_S  # three reports missed: the agent is down or cut off
# A station that never reported has every key, empty (the page reads them without checking).
EMPTY: dict[str, Any] = {"format": None, "sent_at": None, **dict.fromkeys(TOP), "cameras": [], "microphone": None,
                         "disk": None, "upload": None, "clock": None, "warnings": []}
CLOCK_WARN_S = 1.0  # the station's clock this far from the server's: the phases would drift between rooms


@dataclass
class Warning:
    code: str
    text: str  # the agent's own words (Russian), shown as detail
    since: dt.datetime | None


@dataclass
class BoardRow:
    code: str
    name: str
    online: bool
    received_at: dt.datetime | None
    report: dict[str, Any]
    last_upload: dt.datetime | None
    clock_offset_s: float | None  # the station's clock minus the server's (network delay included: an upper bound)
    warnings: list[Warning] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.online and not self.warnings


def rows(s: Session, now: dt.datetime | None = None) -> list[BoardRow]:
    now = now or utcnow()
    stations = s.scalars(select(Station).order_by(Station.code)).all()
    status = {r.station_id: r for r in s.scalars(select(StationStatus))}
    uploads = dict(s.execute(select(Recording.station_id, func.max(Fragment.created_at))
                             .join(Fragment, Fragment.recording_id == Recording.id)
                             .group_by(Recording.station_id)).all())
    open_events: dict[int, list[HealthEvent]] = {}
    for ev in s.scalars(select(HealthEvent).where(HealthEvent.ended_at.is_(None)).order_by(HealthEvent.started_at)):
        open_events.setdefault(ev.station_id, []).append(ev)
    out = []
    for st in stations:
        row = status.get(st.id)
        report: dict[str, Any] = EMPTY | (json.loads(row.report) if row is not None else {})
        received = row.received_at if row is not None else None
        online = received is not None and (now - received).total_seconds() <= OFFLINE_AFTER_S
        offset = None
        if received is not None and report.get("sent_at"):
            offset = (dt.datetime.fromisoformat(report["sent_at"]) - received).total_seconds()
        last_upload = uploads.get(st.id)
        if last_upload is not None and last_upload.tzinfo is None:  # max() over a UTC column comes back naive
            last_upload = last_upload.replace(tzinfo=dt.UTC)
        board = BoardRow(st.code, st.name, online, received, report, last_upload, offset)
        board.warnings = _warnings(board, open_events.get(st.id, []) if online else [])
        out.append(board)
    return out


def _warnings(row: BoardRow, events: list[HealthEvent]) -> list[Warning]:
    """What is wrong now, each with since when: the station's open health events (their start), the warnings of
    its last report that have no event yet, and what the server sees itself (offline, clock, backlog)."""
    if row.received_at is None:
        return [Warning("never_reported", "", None)]
    if not row.online:
        return [Warning("offline", "", row.received_at)]
    since = {ev.code: ev for ev in events}
    out = [Warning(ev.code, ev.text, ev.started_at) for ev in events]
    out += [Warning(w["code"], w["text"], None) for w in row.report.get("warnings", []) if w["code"] not in since]
    if row.clock_offset_s is not None and abs(row.clock_offset_s) > CLOCK_WARN_S:
        out.append(Warning("clock", "", None))
    return out
