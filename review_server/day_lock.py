"""A closed exam day: its marks are locked.

Closing (routes/days_close.py, after the completeness check of day_completeness.py) writes a day_closures row and
an audit row. While it is in force:
- a station's mark events for the day's attempts are refused (409 naming the day; the agent keeps them in its
  journal, listed as refused);
- an examiner's marks and signatures from the server's pages are refused (409 naming the day), except through
  the appeal path: the attempt is under an active appeal hold (retention.py, placed by an archivist or admin)
  and the event is a correction with a reason, or the signature after it;
- the day's schedule cannot be imported again (day_import.py).
Reopening is an admin's act with a reason; both are audited ("day.close", "day.reopen").
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Attempt, DayClosure, ExamDay, LegalHold

DAY_CLOSE = "day.close"
DAY_REOPEN = "day.reopen"
MARKS_REFUSED_CLOSED = "marks.refused.day_closed"


def closure(s: Session, exam_day_id: int | None) -> DayClosure | None:
    """The closing in force for the day, if it is closed."""
    if exam_day_id is None:
        return None
    return s.scalar(select(DayClosure).where(DayClosure.exam_day_id == exam_day_id, DayClosure.reopened_at.is_(None))
                    .order_by(DayClosure.id.desc()).limit(1))


def closed_message(day: ExamDay, row: DayClosure) -> str:
    title = f" «{day.title}»" if day.title else ""
    return (f"exam day {day.day.isoformat()}{title} (id {day.id}) was closed on "
            f"{row.closed_at.strftime('%Y-%m-%d %H:%M')} UTC by {row.closed_by}: its marks are locked; a correction "
            "now goes through an appeal (an appeal hold on the attempt, then a correction with a reason)")


def locked(s: Session, attempt_id: str) -> tuple[ExamDay, DayClosure] | None:
    """The closed day the attempt belongs to, or None when its marks may change."""
    att = s.get(Attempt, attempt_id)
    row = closure(s, att.exam_day_id if att is not None else None)
    if row is None or att is None or att.exam_day_id is None:
        return None
    day = s.get(ExamDay, att.exam_day_id)
    return (day, row) if day is not None else None


def under_appeal(s: Session, attempt_id: str) -> bool:
    q = select(LegalHold.id).where(LegalHold.attempt_id == attempt_id, LegalHold.kind == "appeal",
                                   LegalHold.released_at.is_(None))
    return s.scalar(q.limit(1)) is not None


def refusal_details(day: ExamDay, row: DayClosure) -> dict[str, object]:
    """What a 409 carries besides its message, so that a client can name the day."""
    return {"exam_day": {"id": day.id, "day": day.day.isoformat(), "title": day.title,
                         "closed_at": row.closed_at.isoformat(), "closed_by": row.closed_by}}
