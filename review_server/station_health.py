"""Station health events as the review page and the export package read them (stored by
routes/health_events.py from the agent's station_agent/health_log.py; the format is media/health_events.py's)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from media import health_events

from .models import HealthEvent


def as_json(r: HealthEvent) -> dict[str, Any]:
    return health_events.HealthEvent(r.event_id, r.code, r.text, r.attempt_id, r.started_at, r.ended_at).shown()


def events_between(s: Session, station_id: int, start: dt.datetime | None, end: dt.datetime | None,
                   attempt_id: str | None = None) -> list[dict[str, Any]]:
    """A station's health events raised during the attempt, or overlapping [start, end] when the window is
    known (an event of the minute before the attempt, still lasting, matters too); oldest first."""
    cond = HealthEvent.attempt_id == attempt_id
    if start is not None and end is not None:
        overlaps = (HealthEvent.started_at <= end) & (HealthEvent.ended_at.is_(None) | (HealthEvent.ended_at >= start))
        cond = overlaps if attempt_id is None else overlaps | cond
    rows = s.scalars(select(HealthEvent).where(HealthEvent.station_id == station_id, cond)
                     .order_by(HealthEvent.started_at, HealthEvent.id))
    return [as_json(r) for r in rows]
