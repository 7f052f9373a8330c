"""Archive search across exam days: date range, specialty, station, task, accreditation number, result and
examiner; newest exam day first (by exam day id, then attempt id), paged.

Codes are resolved to ids first (a handful of small lookups) so the attempts query runs on the indexes of
migration 0002: (exam_day_id, id), (station_id, exam_day_id, id), (task_id, exam_day_id, id), and for the
examiner filter examiner_attempts (examiner, exam_day_id, attempt_id), a table the database keeps by
triggers. The result filter uses the derived `scores` rows (see scores.store_outcome).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session

from .models import Attempt, Candidate, ExamDay, ExaminerAttempt, Score, Specialty, Station, Task

RESULTS = ("passed", "failed", "not_final")
MAX_PER_PAGE = 200


@dataclass(frozen=True)
class Query:
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    specialty: str | None = None
    station: str | None = None
    task: str | None = None
    number: str | None = None
    result: str | None = None
    examiner: str | None = None
    page: int = 1
    per_page: int = 50


def _ids(s: Session, model: Any, column: Any, value: str) -> list[int]:
    return list(s.scalars(select(model.id).where(column == value)))


def search(s: Session, q: Query) -> dict[str, Any]:
    conds: list[Any] = []
    # With an examiner, walk their (exam_day_id, attempt_id) index in order (examiner_attempts, kept by
    # triggers); otherwise the attempts' own indexes. Both order by exam day id, then attempt id, descending.
    ea = ExaminerAttempt
    if q.examiner:
        day_col, id_col = ea.exam_day_id, ea.attempt_id
        stmt = select(Attempt.id, Attempt.exam_day_id).join(ea, ea.attempt_id == Attempt.id)
        conds.append(ea.examiner == q.examiner)
    else:
        day_col, id_col = Attempt.exam_day_id, Attempt.id
        stmt = select(Attempt.id, Attempt.exam_day_id)  # index-only where it can be; the page's rows are read after
    if q.date_from or q.date_to:
        days = select(ExamDay.id)
        if q.date_from:
            days = days.where(ExamDay.day >= q.date_from)
        if q.date_to:
            days = days.where(ExamDay.day <= q.date_to)
        conds.append(day_col.in_(list(s.scalars(days))))
    if q.station:
        conds.append(Attempt.station_id.in_(_ids(s, Station, Station.code, q.station)))
    if q.specialty:
        sp = _ids(s, Specialty, Specialty.code, q.specialty)
        conds.append(Attempt.station_id.in_(list(s.scalars(select(Station.id).where(Station.specialty_id.in_(sp))))))
    if q.task:
        conds.append(Attempt.task_id.in_(_ids(s, Task, Task.code, q.task)))
    if q.number:
        conds.append(Attempt.candidate_id.in_(_ids(s, Candidate, Candidate.accreditation_number, q.number)))
    if q.result:
        final = exists().where(and_(Score.attempt_id == Attempt.id, Score.final.is_(True)))
        if q.result == "not_final":
            conds.append(~final)
        else:
            passed = q.result == "passed"
            conds.append(
                exists().where(and_(Score.attempt_id == Attempt.id, Score.final.is_(True), Score.passed.is_(passed)))
            )
    stmt = stmt.where(*conds).order_by(day_col.desc(), id_col.desc())
    rows = s.execute(stmt.limit(q.per_page + 1).offset((q.page - 1) * q.per_page)).all()
    more = len(rows) > q.per_page
    page = [r.id for r in rows[: q.per_page]]
    found = s.execute(
        select(Attempt.id, Attempt.exam_day_id, Attempt.station_id, Attempt.task_id, Attempt.candidate_id).where(
            Attempt.id.in_(page)
        )
    ).all()
    order = {a: i for i, a in enumerate(page)}
    ordered = sorted(found, key=lambda r: order[r.id])
    return {"page": q.page, "per_page": q.per_page, "has_more": more, "attempts": _describe(s, ordered)}


def _describe(s: Session, rows: list[Any]) -> list[dict[str, Any]]:
    if not rows:
        return []

    def lookup(model: Any, ids: set[Any], attr: str) -> dict[Any, Any]:
        ids.discard(None)
        if not ids:
            return {}
        return dict(s.execute(select(model.id, getattr(model, attr)).where(model.id.in_(ids))).all())

    days = lookup(ExamDay, {r.exam_day_id for r in rows}, "day")
    stations = lookup(Station, {r.station_id for r in rows}, "code")
    tasks = lookup(Task, {r.task_id for r in rows}, "code")
    numbers = lookup(Candidate, {r.candidate_id for r in rows}, "accreditation_number")
    ids = [r.id for r in rows]
    scores: dict[str, Score] = {sc.attempt_id: sc for sc in s.scalars(select(Score).where(Score.attempt_id.in_(ids)))}
    out = []
    for r in rows:
        sc = scores.get(r.id)
        out.append(
            {
                "attempt_id": r.id,
                "exam_day": days[r.exam_day_id].isoformat() if r.exam_day_id in days else None,
                "station": stations.get(r.station_id),
                "task": tasks.get(r.task_id),
                "accreditation_number": numbers.get(r.candidate_id),
                "percent": sc.percent if sc else None,
                "result": None if sc is None else ("сдано" if sc.passed else "не сдано"),
                "final": bool(sc and sc.final),
            }
        )
    return out
