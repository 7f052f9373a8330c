"""The examiner's day (their home page, routes/examiner_home.py): the stations assigned to them today with each
room's live state (the station's last status report), their sheets not yet signed, and the attempts they marked.
Only their own: everything here is read through their assignments and their own mark events."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from .models import (
    Attempt,
    Candidate,
    ExamDay,
    ExaminerAssignment,
    ExaminerAttempt,
    MarkEvent,
    Station,
    StationStatus,
    Task,
    utcnow,
)
from .stations_board import EMPTY, OFFLINE_AFTER_S

RECENT = 50


@dataclass
class StationToday:
    code: str
    name: str
    task: str | None
    online: bool
    report: dict[str, Any]


@dataclass
class AttemptLine:
    attempt_id: str
    day: dt.date | None
    station: str
    task: str | None
    number: str | None


def stations_today(s: Session, user_id: int, today: dt.date) -> list[StationToday]:
    day_ids = list(s.scalars(select(ExamDay.id).where(ExamDay.day == today)))
    q = (select(Station, Task.title).join(ExaminerAssignment, ExaminerAssignment.station_id == Station.id)
         .outerjoin(Task, Task.id == Station.task_id)
         .where(ExaminerAssignment.user_id == user_id,
                or_(ExaminerAssignment.exam_day_id.is_(None), ExaminerAssignment.exam_day_id.in_(day_ids)))
         .distinct().order_by(Station.code))
    now, out = utcnow(), []
    for st, title in s.execute(q):
        row = s.get(StationStatus, st.id)
        online = row is not None and (now - row.received_at).total_seconds() <= OFFLINE_AFTER_S
        report = EMPTY | (json.loads(row.report) if row is not None else {})
        out.append(StationToday(st.code, st.name, title, online, report))
    return out


def _lines(s: Session, ids: list[str]) -> list[AttemptLine]:
    if not ids:
        return []
    q = (select(Attempt.id, ExamDay.day, Station.code, Task.title, Candidate.accreditation_number)
         .join(Station, Station.id == Attempt.station_id)
         .outerjoin(ExamDay, ExamDay.id == Attempt.exam_day_id)
         .outerjoin(Task, Task.id == func.coalesce(Attempt.task_id, Station.task_id))
         .outerjoin(Candidate, Candidate.id == Attempt.candidate_id)
         .where(Attempt.id.in_(ids)))
    found = {r[0]: AttemptLine(*r) for r in s.execute(q)}
    return [found[i] for i in ids if i in found]


def marked(s: Session, login: str, limit: int = RECENT) -> list[AttemptLine]:
    """The attempts the examiner marked, newest exam day first."""
    ids = list(s.scalars(select(ExaminerAttempt.attempt_id).where(ExaminerAttempt.examiner == login)
                         .order_by(ExaminerAttempt.exam_day_id.desc(), ExaminerAttempt.attempt_id.desc())
                         .limit(limit)))
    return _lines(s, ids)


def unsigned(s: Session, login: str) -> list[AttemptLine]:
    """The examiner's sheets not signed: attempts they marked whose last finalise/reopen of theirs is not a
    finalise (never signed, or reopened since)."""
    marked_ids = set(s.scalars(select(ExaminerAttempt.attempt_id).where(ExaminerAttempt.examiner == login)))
    last: dict[str, str] = {}
    for attempt_id, kind in s.execute(select(MarkEvent.attempt_id, MarkEvent.kind)
                                      .where(MarkEvent.examiner == login,
                                             MarkEvent.kind.in_(("finalise", "reopen")))
                                      .order_by(MarkEvent.id)):
        last[attempt_id] = kind
    ids = sorted(a for a in marked_ids if last.get(a) != "finalise")
    return _lines(s, ids)
