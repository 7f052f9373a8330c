"""Whose an attempt is: the station the exam day's schedule gave it.

Attempt rows are made only by the schedule import (`osce server schedule import`, day_import.py). A station's
mark, fragment or CPR report that names an attempt is taken only when the schedule gave that attempt to the same
station; anything else is refused with 409 before anything is written (health events: routes/health_events.py).
A station that could create an attempt by naming it first could claim another room's attempt before that room
did, and the room's own marks and media would then be refused as "another station's".
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from .models import Attempt
from .web import ApiError


def station_attempt(s: Session, station_id: int, attempt_id: str, where: str) -> Attempt:
    """The scheduled attempt `attempt_id` of this station, or ApiError 409 naming `where`."""
    att = s.get(Attempt, attempt_id)
    if att is None:
        raise ApiError(409, f"attempt {attempt_id!r} is not on the exam day's schedule (import the day with "
                       "`osce server schedule import`)", where)
    if att.station_id != station_id:
        raise ApiError(409, f"attempt {attempt_id!r} belongs to another station", where)
    return att
