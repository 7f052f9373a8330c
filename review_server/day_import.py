"""Import an exam day's schedule (the file the exam clock serves, `schedule_file`) into the database, so that
its attempts belong to the day, the candidate and the task before the first fragment or mark arrives.

Without this, attempts are created bare by the first upload and the results protocol (per exam day and
specialty) cannot see them. What it does, idempotently (run it again after editing the day):
- the specialty (by code), each task (code = the checklist file's stem, title from the checklist),
- each checklist version (its YAML stored by content hash, as POST /api/checklist-versions does), so that
  scores can be computed from the marks,
- each station's task and specialty (stations must exist: `osce server station add`),
- the exam day (by date and title), candidates by accreditation number, and one attempt row per entry.

Schedule format (station_agent/lifecycle.py parse_schedule): {"attempts": [{"attempt_id", "candidate",
"station_id", "checklist", "reading_starts_at", "reading_s", "performing_s"}, ...]}.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from checklists.loader import ChecklistError, load_checklist
from checklists.model import Checklist

from . import audit
from .models import Attempt, Candidate, ChecklistVersion, ExamDay, Specialty, Station, Task
from .names import name_problem
from .retention import active_holds, held_message
from .validate import CODE_RE

SCHEDULE_IMPORT = "schedule.import"
SCHEDULE_IMPORT_REFUSED = "schedule.import.refused"  # it would have changed a held attempt
SHIPPED_CHECKLISTS = Path(__file__).resolve().parent.parent / "checklists" / "data"


class ScheduleImportError(ValueError):
    """A schedule entry that cannot be imported, with where it is (attempts[i].field)."""

    def __init__(self, message: str, where: str, holds: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{where}: {message}")
        self.where, self.holds = where, holds or []


@dataclass
class ImportReport:
    exam_day_id: int = 0
    attempts_new: int = 0
    attempts_updated: int = 0
    candidates_new: int = 0
    tasks: list[str] = field(default_factory=list)


def _get_or_add(s: Session, model: Any, where: Any, **fields: Any) -> tuple[Any, bool]:
    row = s.scalar(select(model).where(where))
    if row is not None:
        return row, False
    row = model(**fields)
    s.add(row)
    s.flush()
    return row, True


def _checklist(stem: str, folder: Path, where: str, cache: dict[str, tuple[Checklist, str]]) -> tuple[Checklist, str]:
    if stem not in cache:
        if not CODE_RE.fullmatch(stem):
            raise ScheduleImportError(f"not a checklist name: {stem!r}", where)
        path = folder / f"{stem}.yaml"
        try:
            cache[stem] = (load_checklist(path), path.read_text(encoding="utf-8"))
        except (OSError, ChecklistError) as exc:
            raise ScheduleImportError(f"checklist {path} cannot be loaded: {exc}", where) from None
    return cache[stem]


def _starts(entry: dict[str, Any], where: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(str(entry["reading_starts_at"]))
    except (KeyError, ValueError):
        raise ScheduleImportError("needs reading_starts_at as an ISO time with a UTC offset", where) from None
    if when.tzinfo is None:
        raise ScheduleImportError("reading_starts_at needs a UTC offset", where)
    return when


def import_day(s: Session, schedule: dict[str, Any], specialty: str, specialty_name: str, title: str,
               actor: str, checklist_dir: Path = SHIPPED_CHECKLISTS, timezone: str = "UTC") -> ImportReport:
    """Create or update everything the schedule names (inside the caller's transaction); audited. The exam day
    is the date of its first attempt in the centre's time zone (the server's `timezone`): examiners' tablet
    credentials are for that local day."""
    entries = schedule.get("attempts") if isinstance(schedule, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ScheduleImportError("expected a non-empty 'attempts' list", "attempts")
    if not CODE_RE.fullmatch(specialty):
        raise ScheduleImportError(f"must match {CODE_RE.pattern}", "specialty")
    for where, name in (("specialty name", specialty_name), ("title", title)):
        if problem := name_problem(name):
            raise ScheduleImportError(problem, where)
    report = ImportReport()
    sp, _ = _get_or_add(s, Specialty, Specialty.code == specialty, code=specialty, name=specialty_name or specialty)
    first = min(_starts(e, f"attempts[{i}]") for i, e in enumerate(entries) if isinstance(e, dict))
    local = first.astimezone(zoneinfo.ZoneInfo(timezone)).date()
    day, _ = _get_or_add(s, ExamDay, (ExamDay.day == local) & (ExamDay.title == title), day=local, title=title)
    report.exam_day_id = day.id
    cache: dict[str, tuple[Checklist, str]] = {}
    for i, entry in enumerate(entries):
        where = f"attempts[{i}]"
        if not isinstance(entry, dict):
            raise ScheduleImportError("each attempt is an object", where)
        _starts(entry, where)
        attempt_id, number, station_code, stem = (
            str(entry.get(k, "")) for k in ("attempt_id", "candidate", "station_id", "checklist")
        )
        for name, value in (("attempt_id", attempt_id), ("candidate", number), ("station_id", station_code)):
            if not CODE_RE.fullmatch(value):
                raise ScheduleImportError(f"must match {CODE_RE.pattern}", f"{where}.{name}")
        cl, source = _checklist(stem, checklist_dir, f"{where}.checklist", cache)
        task, _ = _get_or_add(s, Task, Task.code == stem, code=stem, title=cl.title[:300], specialty_id=sp.id)
        if stem not in report.tasks:
            report.tasks.append(stem)
        _get_or_add(s, ChecklistVersion, ChecklistVersion.sha256 == cl.content_hash, sha256=cl.content_hash,
                    task_id=task.id, version=cl.version, title=cl.title[:300], source=source)
        station = s.scalar(select(Station).where(Station.code == station_code))
        if station is None:
            raise ScheduleImportError(f"no station {station_code!r} (osce server station add)", f"{where}.station_id")
        station.task_id, station.specialty_id = task.id, sp.id
        cand, new = _get_or_add(s, Candidate, Candidate.accreditation_number == number,
                                accreditation_number=number, specialty_id=sp.id)
        report.candidates_new += new
        row = s.get(Attempt, attempt_id)
        if row is None:
            s.add(Attempt(id=attempt_id, station_id=station.id, exam_day_id=day.id, candidate_id=cand.id,
                          task_id=task.id))
            report.attempts_new += 1
        else:  # created bare by an early upload, or an edited day: the schedule says what it is
            if row.station_id != station.id:
                raise ScheduleImportError(f"attempt {attempt_id!r} was recorded at another station", where)
            changed = (row.exam_day_id, row.candidate_id, row.task_id) != (day.id, cand.id, task.id)
            holds = active_holds(s, attempt_id) if changed else []
            if holds:  # whose result this is may not be rewritten while an appeal or request holds it
                raise ScheduleImportError(held_message(attempt_id, holds) + "; release the hold first", where, holds)
            row.exam_day_id, row.candidate_id, row.task_id = day.id, cand.id, task.id
            report.attempts_updated += 1
    s.flush()
    audit.append(s, actor, SCHEDULE_IMPORT, str(day.id), {
        "day": day.day.isoformat(), "title": title, "specialty": specialty, "attempts": len(entries),
        "tasks": report.tasks,
    })
    return report
