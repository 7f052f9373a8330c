"""Examiners act only on the stations (and days) assigned to them."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..app import ApiError
from ..auth import Identity
from ..models import ExaminerAssignment
from ..roles import SCOPED_TO_ASSIGNMENTS


def examiner_may(s: Session, who: Identity, station_id: int, exam_day_id: int | None) -> bool:
    if who.principal not in SCOPED_TO_ASSIGNMENTS:
        return True
    day_match = ExaminerAssignment.exam_day_id.is_(None)
    if exam_day_id is not None:
        day_match = or_(day_match, ExaminerAssignment.exam_day_id == exam_day_id)
    q = select(ExaminerAssignment.id).where(
        ExaminerAssignment.user_id == who.user_id, ExaminerAssignment.station_id == station_id, day_match
    )
    return s.scalar(q.limit(1)) is not None


def require_assigned(s: Session, who: Identity, station_id: int, exam_day_id: int | None, where: str) -> None:
    if not examiner_may(s, who, station_id, exam_day_id):
        raise ApiError(403, "this station/day is not assigned to you", where)
