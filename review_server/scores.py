"""An attempt's result from its stored mark events, scored with the checklist version they were made against.

The checklist content comes from `checklist_versions.source` (YAML uploaded by an admin, keyed by its
content hash); without it an attempt cannot be scored and says so. Sheets come from the shared merge rule
(checklists.marks.merge) and scores from checklists.scoring.score, never a second implementation.

Several examiners on one attempt: the result shown is the lowest percentage, and "сдано" only if every
examiner's sheet passes; the attempt is final only when every examiner's sheet is finalised.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from checklists.loader import ChecklistError, parse_checklist
from checklists.marks import WIRE_FIELDS, ExaminerSheet, MarkEvent, MarkEventError, merge
from checklists.model import Checklist
from checklists.scoring import Score, score

from .models import ChecklistVersion
from .models import MarkEvent as MarkRow

PASSED, FAILED = "сдано", "не сдано"


def wire(row: MarkRow) -> dict[str, Any]:
    return {k: getattr(row, k) for k in WIRE_FIELDS}


def checklist_for(s: Session, content_hash: str, cache: dict[str, Checklist | None] | None = None) -> Checklist | None:
    """The checklist whose content hash is `content_hash`, if its YAML is on the server."""
    if cache is not None and content_hash in cache:
        return cache[content_hash]
    found: Checklist | None = None
    source = s.scalar(select(ChecklistVersion.source).where(ChecklistVersion.sha256 == content_hash))
    if source:
        try:
            parsed = parse_checklist(source, f"checklist {content_hash[:12]}")
            found = parsed if parsed.content_hash == content_hash else None
        except ChecklistError:
            found = None
    if cache is not None:
        cache[content_hash] = found
    return found


@dataclass
class Outcome:
    checklist_hash: str | None = None
    checklist: Checklist | None = None
    sheets: dict[str, ExaminerSheet] = field(default_factory=dict)
    scores: dict[str, Score] = field(default_factory=dict)
    final: bool = False
    percent: float | None = None
    passed: bool | None = None
    note: str = ""
    note_key: str = ""  # what the note says, for a page to say it in its reader's language (i18n "note.*")

    @property
    def result(self) -> str:
        if self.passed is None:
            return ""
        return PASSED if self.passed else FAILED

    def to_json(self) -> dict[str, Any]:
        return {
            "checklist_hash": self.checklist_hash,
            "final": self.final,
            "percent": self.percent,
            "passed": self.passed,
            "result": self.result,
            "note": self.note,
            "scores": {ex: sc.to_json() for ex, sc in sorted(self.scores.items())},
        }


def outcome(events: Iterable[dict[str, Any]], checklist: Checklist | None) -> Outcome:
    """Merge the events and score each examiner's sheet."""
    out = Outcome()
    try:
        out.sheets = merge(MarkEvent.from_json(e) for e in events)
    except MarkEventError as exc:
        out.note = f"mark events cannot be merged: {exc}"
        out.note_key = "unmerged"
        return out
    if not out.sheets:
        out.note = "no marks"
        out.note_key = "no_marks"
        return out
    out.checklist_hash = next(iter(out.sheets.values())).checklist_hash
    out.final = all(sh.finalised for sh in out.sheets.values())
    if checklist is None:
        out.note = f"checklist version {out.checklist_hash[:12]}… is not on the server"
        out.note_key = "no_checklist"
        out.final = False
        return out
    out.checklist = checklist
    try:
        out.scores = {ex: score(checklist, sh.marks) for ex, sh in out.sheets.items()}
    except ValueError as exc:
        out.note = str(exc)
        out.note_key = "bad_checklist"
        out.final = False
        return out
    out.percent = min(sc.percent for sc in out.scores.values())
    out.passed = all(sc.passed for sc in out.scores.values())
    if not out.final:
        out.note = "not finalised"
        out.note_key = "not_final"
    return out


def attempt_outcome(s: Session, attempt_id: str, cache: dict[str, Checklist | None] | None = None) -> Outcome:
    rows = s.scalars(select(MarkRow).where(MarkRow.attempt_id == attempt_id).order_by(MarkRow.id)).all()
    events = [wire(r) for r in rows]
    checklist = checklist_for(s, events[0]["checklist_hash"], cache) if events else None
    return outcome(events, checklist)


def store_outcome(s: Session, attempt_id: str, out: Outcome) -> None:
    """Keep the derived result in `scores` (what the archive search filters on); recomputable at any time."""
    from .models import Score as ScoreRow

    if out.checklist is None or out.percent is None or out.passed is None:
        return
    version_id = s.scalar(select(ChecklistVersion.id).where(ChecklistVersion.sha256 == out.checklist.content_hash))
    if version_id is None:
        return
    row = s.scalar(
        select(ScoreRow).where(ScoreRow.attempt_id == attempt_id, ScoreRow.checklist_version_id == version_id)
    )
    if row is None:
        row = ScoreRow(attempt_id=attempt_id, checklist_version_id=version_id)
        s.add(row)
    row.percent, row.passed, row.final = out.percent, out.passed, out.final
    row.computed_at = dt.datetime.now(dt.UTC)
    s.flush()


def refresh(s: Session, attempt_ids: Iterable[str] | None = None) -> int:
    """Recompute the stored result of the given attempts (default: every attempt with marks); returns how many."""
    if attempt_ids is None:
        attempt_ids = s.scalars(select(MarkRow.attempt_id).distinct().order_by(MarkRow.attempt_id)).all()
    cache: dict[str, Checklist | None] = {}
    n = 0
    for attempt_id in attempt_ids:
        out = attempt_outcome(s, attempt_id, cache)
        if out.percent is not None:
            store_outcome(s, attempt_id, out)
            n += 1
    return n
