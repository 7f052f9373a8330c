"""Examiners act only on the stations (and days) assigned to them.

An object named in the URL (attempt, recording, fragment, station) that is outside the examiner's assignments
is answered exactly like a missing one (the caller's own 404): a 403 would tell them it exists. A 403 stays
for what the role itself may not do (roles.requires)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from ..auth import Identity
from ..models import ExaminerAssignment
from ..roles import SCOPED_TO_ASSIGNMENTS
from ..validate import CODE_RE, path_ident
from ..web import ApiError, identity


def examiner_may(s: Session, who: Identity, station_id: int, exam_day_id: int | None) -> bool:
    if who.principal not in SCOPED_TO_ASSIGNMENTS:
        return True
    day_match: ColumnElement[bool] = ExaminerAssignment.exam_day_id.is_(None)
    if exam_day_id is not None:
        day_match = or_(day_match, ExaminerAssignment.exam_day_id == exam_day_id)
    q = select(ExaminerAssignment.id).where(
        ExaminerAssignment.user_id == who.user_id, ExaminerAssignment.station_id == station_id, day_match
    )
    return s.scalar(q.limit(1)) is not None


def require_assigned(s: Session, who: Identity, station_id: int, exam_day_id: int | None, missing: ApiError) -> None:
    """Raise `missing` (the 404 the caller gives for an object that does not exist) unless who may act here."""
    if not examiner_may(s, who, station_id, exam_day_id):
        raise missing


def own_station(request: web.Request, what: str) -> str:
    """The URL's station code, which must be the calling station token's own (403 otherwise: the code is
    compared before anything is looked up, so it tells nothing)."""
    code = path_ident(request, "code", CODE_RE)
    if identity(request).station_code != code:
        raise ApiError(403, f"a station {what}", "URL code")
    return code

