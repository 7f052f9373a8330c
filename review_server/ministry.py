"""Ministry requests: the archivist's whole job with a request for materials, as one flow over the export requests
(export.py): register what is asked (the request's number and date, and a candidate, an exam day and a stage or
skill), build its package from that (the attempts that match are selected and held, and the package is written by
the export job with its progress), and record when and how the answer was sent. Every step is audited.

A request's state, from its rows: registered → selected (attempts chosen) → building → ready (a package written)
→ sent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit
from .export import REQUEST_ADD, package_json, select_for_request
from .models import (
    Attempt,
    Candidate,
    ExamDay,
    ExportPackage,
    ExportRequest,
    ExportRequestAttempt,
    Station,
    Task,
    utcnow,
)

REQUEST_SENT = "archive.request.sent"
PRACTICAL = "practical"  # the stage: II этап, practical skills (OSCE): every station; or "task:<code>", one skill
MINISTRY = "Минздрав России"


class RequestError(ValueError):
    """The step cannot be done: `field` is the input it is about, `key` why (the catalogue's "form" section)."""

    def __init__(self, field: str, key: str) -> None:
        super().__init__(f"{field}: {key}")
        self.field, self.key = field, key


def stages(s: Session) -> list[tuple[str, str | None]]:
    """(value, task title) for the stage choice: the whole practical stage, then each skill."""
    return [(PRACTICAL, None), *((f"task:{t.code}", t.title) for t in s.scalars(select(Task).order_by(Task.code)))]


def register(s: Session, *, number: str, date: dt.date, requester: str, asked_number: str | None,
             asked_day: dt.date | None, asked_stage: str, subject: str, actor: str) -> ExportRequest:
    if asked_number is None and asked_day is None:
        raise RequestError("asked_number", "one_of")
    if asked_stage not in dict(stages(s)):
        raise RequestError("asked_stage", "choice")
    req = ExportRequest(number=number, request_date=date, requester=requester, subject=subject, created_by=actor,
                        asked_number=asked_number, asked_day=asked_day, asked_stage=asked_stage)
    s.add(req)
    s.flush()
    audit.append(s, actor, REQUEST_ADD, f"request:{req.id}",
                 {"number": number, "requester": requester, "asked": {
                     "number": asked_number, "day": asked_day.isoformat() if asked_day else None,
                     "stage": asked_stage}})
    return req


def matching(s: Session, req: ExportRequest) -> list[str]:
    """The attempts the request asks for: the candidate's, on the day, at the stage or skill."""
    q = (select(Attempt.id).join(Station, Station.id == Attempt.station_id)
         .outerjoin(Task, Task.id == func.coalesce(Attempt.task_id, Station.task_id)))
    if req.asked_number:
        q = q.join(Candidate, Candidate.id == Attempt.candidate_id).where(
            Candidate.accreditation_number == req.asked_number)
    if req.asked_day:
        q = q.join(ExamDay, ExamDay.id == Attempt.exam_day_id).where(ExamDay.day == req.asked_day)
    if req.asked_stage and req.asked_stage.startswith("task:"):
        q = q.where(Task.code == req.asked_stage[5:])
    return list(s.scalars(q.order_by(Attempt.id)))


def select_matching(s: Session, request_id: int, actor: str) -> list[str]:
    """Select (and hold) what the request asks for; the whole selection, or RequestError if nothing matches."""
    req = s.get(ExportRequest, request_id)
    if req is None:
        raise RequestError("request", "unknown")
    if req.sent_at is not None:
        raise RequestError("request", "already")
    ids = matching(s, req)
    if not ids:
        raise RequestError("request", "no_attempts")
    return select_for_request(s, req, ids, actor)[1]


def mark_sent(s: Session, request_id: int, note: str, actor: str, config: Any) -> ExportRequest:
    """The answer went out (how: the note, e.g. the covering letter's number): only with a written package."""
    req = s.get(ExportRequest, request_id)
    if req is None:
        raise RequestError("request", "unknown")
    if req.sent_at is not None:
        raise RequestError("request", "already")
    packages = [package_json(p, config) for p in
                s.scalars(select(ExportPackage).where(ExportPackage.request_id == request_id))]
    done = [p for p in packages if p["status"] == "done"]
    if not done:
        raise RequestError("request", "not_ready" if packages else "no_package")
    req.sent_at, req.sent_by, req.sent_note = utcnow(), actor, note
    audit.append(s, actor, REQUEST_SENT, f"request:{request_id}",
                 {"note": note, "package_id": done[-1]["id"], "sha256": done[-1]["sha256"]})
    return req


@dataclass
class Row:
    request: ExportRequest
    attempts: int
    package: dict[str, Any] | None  # the latest, with its status and progress

    @property
    def state(self) -> str:
        if self.request.sent_at is not None:
            return "sent"
        if self.package is not None:
            return {"done": "ready", "running": "building"}.get(self.package["status"], self.package["status"])
        return "selected" if self.attempts else "registered"


def rows(s: Session, config: Any, limit: int = 200) -> list[Row]:
    reqs = s.scalars(select(ExportRequest).order_by(ExportRequest.id.desc()).limit(limit)).all()
    ids = [r.id for r in reqs]
    counts = dict(s.execute(select(ExportRequestAttempt.request_id, func.count())
                            .where(ExportRequestAttempt.request_id.in_(ids))
                            .group_by(ExportRequestAttempt.request_id)).all()) if ids else {}
    latest: dict[int, ExportPackage] = {}
    if ids:
        for p in s.scalars(select(ExportPackage).where(ExportPackage.request_id.in_(ids)).order_by(ExportPackage.id)):
            latest[p.request_id] = p
    return [Row(r, counts.get(r.id, 0), package_json(latest[r.id], config) if r.id in latest else None)
            for r in reqs]
