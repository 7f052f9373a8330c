"""An exam day set up in the browser (routes/days_admin.py): the plan, its stations and tasks, the candidate list,
the slots in circuits (circuits.py), the examiners of its stations; then fixed through the one schedule import
(day_import.import_day, as `osce server schedule import` does from JSON), after which the exam clock serves its
slots to the stations (station_schedule).

The schedule is made from the plan: changing the timing, the stations or the list clears the slots, which are
then generated again; slots may be edited, added and removed until the day is fixed. Every change is audited.
Problems are DayError(field, key, params): the page names the field in its reader's language
(i18n "days" section, "err.<key>").
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from checklists.loader import ChecklistError, load_checklist

from . import audit
from .candidate_list import Listed
from .circuits import PlanError, Stream, Timing, generate
from .day_import import SHIPPED_CHECKLISTS, ImportReport, ScheduleImportError, import_day
from .day_lock import closure
from .models import (
    Attempt,
    Candidate,
    CandidatePersonal,
    CandidateUpload,
    DayCandidate,
    DayPlan,
    DaySlot,
    DayStation,
    ExamDay,
    ExaminerAssignment,
    Specialty,
    Station,
    User,
    utcnow,
)
from .names import name_problem
from .roles import Role
from .validate import CODE_RE

DAY_CREATE = "day.create"
DAY_PLAN = "day.plan"
DAY_STATIONS = "day.stations"
DAY_UPLOAD = "day.candidates.upload"
DAY_CANDIDATES = "day.candidates.import"
DAY_GENERATE = "day.schedule.generate"
DAY_SLOT = "day.slot"
DAY_FIX = "day.fix"
DAY_ASSIGN = "day.examiner.assign"
DAY_UNASSIGN = "day.examiner.unassign"
DAY_ROUTE_SHEETS = "day.route_sheets"
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
SERVED_BEFORE = dt.timedelta(days=1)  # the exam clock serves a fixed day's slots from a day before ...
SERVED_AFTER = dt.timedelta(days=2)  # ... to two days after them


class DayError(ValueError):
    """A refusal naming the form field it is about (empty: the day as a whole)."""

    def __init__(self, field: str, key: str, status: int = 422, **params: Any) -> None:
        super().__init__(f"{field}: {key} {params}")
        self.field, self.key, self.status, self.params = field, key, status, params


@dataclass(frozen=True)
class ChecklistChoice:
    stem: str
    title: str
    reading_s: int
    performing_s: int
    changeover_s: int


@functools.cache
def checklist_choices(folder: Path = SHIPPED_CHECKLISTS) -> tuple[ChecklistChoice, ...]:
    """The checklists a station can run (the files the schedule import loads), by file name."""
    out = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            cl = load_checklist(path)
        except ChecklistError:
            continue
        tl = cl.time_limits
        out.append(ChecklistChoice(path.stem, cl.title, int(tl.reading_s), int(tl.performing_s),
                                   int(tl.changeover_s)))
    return tuple(out)


def local_time(day: dt.date, hhmm: str, timezone: str) -> dt.datetime:
    """A local HH:MM on the day, as an aware UTC time."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    return dt.datetime.combine(day, dt.time(hour, minute), zoneinfo.ZoneInfo(timezone)).astimezone(dt.UTC)


def hhmm(value: str, field: str) -> str:
    value = value.strip()
    if len(value) == 4 and value[1] == ":":
        value = "0" + value
    if not _HHMM.fullmatch(value):
        raise DayError(field, "time_format", value=value[:20])
    return value


def seconds(value: str, field: str, lo: int = 1, hi: int = 7200) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", value.strip()) or not lo <= int(value) <= hi:
        raise DayError(field, "seconds", lo=lo, hi=hi)
    return int(value)


# -- the day and its plan ----------------------------------------------------------------------------------------


def load(s: Session, day_id: int) -> tuple[ExamDay, DayPlan | None]:
    day = s.get(ExamDay, day_id)
    if day is None:
        raise DayError("", "no_day", status=404, id=day_id)
    return day, s.get(DayPlan, day_id)


def draft(s: Session, day_id: int) -> tuple[ExamDay, DayPlan]:
    """The day and its plan, which must still be open to change."""
    day, plan = load(s, day_id)
    if plan is None:
        raise DayError("", "no_plan", status=409)
    if plan.fixed_at is not None:
        raise DayError("", "fixed", status=409, at=plan.fixed_at.strftime("%d.%m.%Y %H:%M"))
    if closure(s, day.id) is not None:
        raise DayError("", "closed", status=409)
    return day, plan


def create_day(s: Session, day: dt.date, title: str, specialty: str, specialty_name: str, timing: Timing,
               starts_at: str, actor: str) -> ExamDay:
    if problem := name_problem(title):
        raise DayError("title", "name_chars", why=problem)
    if not CODE_RE.fullmatch(specialty):
        raise DayError("specialty", "code_format")
    if s.scalar(select(ExamDay.id).where(ExamDay.day == day, ExamDay.title == title)) is not None:
        raise DayError("title", "day_exists", day=day.strftime("%d.%m.%Y"), title=title)
    sp = s.scalar(select(Specialty).where(Specialty.code == specialty))
    if sp is None:
        if not specialty_name.strip():
            raise DayError("specialty_name", "specialty_name")
        if problem := name_problem(specialty_name):
            raise DayError("specialty_name", "name_chars", why=problem)
        sp = Specialty(code=specialty, name=specialty_name.strip())
        s.add(sp)
        s.flush()
    row = ExamDay(day=day, title=title)
    s.add(row)
    s.flush()
    s.add(DayPlan(exam_day_id=row.id, specialty_id=sp.id, reading_s=timing.reading_s,
                  performing_s=timing.performing_s, changeover_s=timing.changeover_s, starts_at=starts_at,
                  created_by=actor))
    audit.append(s, actor, DAY_CREATE, str(row.id), {"day": day.isoformat(), "title": title, "specialty": sp.code,
                                                     "timing": vars(timing), "starts_at": starts_at})
    return row


def _clear_slots(s: Session, day_id: int) -> int:
    return s.execute(delete(DaySlot).where(DaySlot.exam_day_id == day_id)).rowcount or 0  # type: ignore[attr-defined]


def update_plan(s: Session, day_id: int, timing: Timing, starts_at: str, actor: str) -> None:
    day, plan = draft(s, day_id)
    plan.reading_s, plan.performing_s, plan.changeover_s = timing.reading_s, timing.performing_s, timing.changeover_s
    plan.starts_at = starts_at
    cleared = _clear_slots(s, day.id)
    audit.append(s, actor, DAY_PLAN, str(day.id), {"timing": vars(timing), "starts_at": starts_at,
                                                   "slots_cleared": cleared})


def set_stations(s: Session, day_id: int, chosen: list[tuple[str, str]], actor: str) -> None:
    """The day's stations, each with its checklist: (station code, checklist stem) pairs."""
    day, _plan = draft(s, day_id)
    stems = {c.stem for c in checklist_choices()}
    rows = []
    for code, stem in chosen:
        st = s.scalar(select(Station).where(Station.code == code))
        if st is None:
            raise DayError(f"task_{code}", "no_station", code=code)
        if stem not in stems:
            raise DayError(f"task_{code}", "no_checklist", code=code)
        rows.append(DayStation(exam_day_id=day.id, station_id=st.id, checklist=stem))
    s.execute(delete(DayStation).where(DayStation.exam_day_id == day.id))
    s.add_all(rows)
    cleared = _clear_slots(s, day.id)
    audit.append(s, actor, DAY_STATIONS, str(day.id), {"stations": dict(chosen), "slots_cleared": cleared})


def day_stations(s: Session, day_id: int) -> list[tuple[Station, str]]:
    """The day's stations in code order, with their checklist stems."""
    q = (select(Station, DayStation.checklist).join(DayStation, DayStation.station_id == Station.id)
         .where(DayStation.exam_day_id == day_id).order_by(Station.code))
    return [(st, stem) for st, stem in s.execute(q)]


# -- the candidate list ------------------------------------------------------------------------------------------


def store_upload(s: Session, day_id: int, file_name: str, data: bytes, actor: str) -> CandidateUpload:
    day, _plan = draft(s, day_id)
    s.execute(delete(CandidateUpload).where(CandidateUpload.exam_day_id == day.id))  # personal data: one at a time
    sha = hashlib.sha256(data).hexdigest()
    row = CandidateUpload(exam_day_id=day.id, file_name=file_name[:200], sha256=sha, body=data, created_by=actor)
    s.add(row)
    s.flush()
    audit.append(s, actor, DAY_UPLOAD, str(day.id), {"file": file_name[:200], "sha256": sha, "bytes": len(data)})
    return row


def upload_of(s: Session, day_id: int, upload_id: int) -> CandidateUpload:
    row = s.get(CandidateUpload, upload_id)
    if row is None or row.exam_day_id != day_id:
        raise DayError("file", "no_upload")
    return row


def import_candidates(s: Session, day_id: int, upload_id: int, listed: list[Listed], mapping: dict[str, Any],
                      actor: str) -> int:
    """The day's list becomes `listed` (every row checked beforehand: candidate_list.parse_rows); new
    candidates are added, names go to candidate_personal; the upload is removed; the slots are cleared."""
    day, plan = draft(s, day_id)
    upload = upload_of(s, day.id, upload_id)
    s.execute(delete(DayCandidate).where(DayCandidate.exam_day_id == day.id))
    new, named = 0, 0
    for item in listed:
        cand = s.scalar(select(Candidate).where(Candidate.accreditation_number == item.number))
        if cand is None:
            cand = Candidate(accreditation_number=item.number, specialty_id=plan.specialty_id)
            s.add(cand)
            s.flush()
            new += 1
        elif cand.specialty_id is None:
            cand.specialty_id = plan.specialty_id
        if item.names is not None and any(item.names.values()):
            personal = s.get(CandidatePersonal, cand.id) or CandidatePersonal(candidate_id=cand.id)
            personal.last_name, personal.first_name, personal.middle_name = (
                item.names["last_name"], item.names["first_name"], item.names["middle_name"])
            s.add(personal)
            named += 1
        s.add(DayCandidate(exam_day_id=day.id, candidate_id=cand.id, row=item.row, stream=item.stream,
                           starts_at=item.time))
    cleared = _clear_slots(s, day.id)
    details = {"file": upload.file_name, "sha256": upload.sha256, "candidates": len(listed), "new": new,
               "with_names": named, "mapping": mapping, "slots_cleared": cleared}
    s.delete(upload)
    audit.append(s, actor, DAY_CANDIDATES, str(day.id), details)  # numbers and counts only, never names
    return len(listed)


def day_candidates(s: Session, day_id: int) -> list[tuple[DayCandidate, str]]:
    q = (select(DayCandidate, Candidate.accreditation_number).join(Candidate, Candidate.id == DayCandidate.candidate_id)
         .where(DayCandidate.exam_day_id == day_id).order_by(DayCandidate.row))
    return [(dc, number) for dc, number in s.execute(q)]


def streams(s: Session, day: ExamDay, timezone: str) -> list[Stream]:
    """The list's streams in order (by their own time, else as they first appear)."""
    groups: dict[str, list[str]] = {}
    times: dict[str, str | None] = {}
    for dc, number in day_candidates(s, day.id):
        groups.setdefault(dc.stream, []).append(number)
        times.setdefault(dc.stream, dc.starts_at)
    order = sorted(groups, key=lambda k: (times[k] is None, times[k] or "", list(groups).index(k)))
    return [Stream(label or "1", local_time(day.day, t, timezone) if (t := times[label]) else None, groups[label])
            for label in order]


# -- the slots ---------------------------------------------------------------------------------------------------


def _attempt_id(day_id: int, station: Station, n: int) -> str:
    code = station.code if len(station.code) <= 40 else f"s{station.id}"
    return f"d{day_id}-{code}-{n:03d}"


def generate_slots(s: Session, day_id: int, timezone: str, actor: str) -> int:
    day, plan = draft(s, day_id)
    stations = day_stations(s, day.id)
    by_code = {st.code: st for st, _ in stations}
    timing = Timing(plan.reading_s, plan.performing_s, plan.changeover_s)
    try:
        slots = generate([(st.code, stem) for st, stem in stations], streams(s, day, timezone), timing,
                         local_time(day.day, plan.starts_at, timezone))
    except PlanError as exc:
        raise DayError("", exc.key, **exc.params) from None
    last = max(slot.reading_starts_at for slot in slots) + dt.timedelta(seconds=timing.slot_s)
    if last.astimezone(zoneinfo.ZoneInfo(timezone)).date() != day.day:
        raise DayError("", "past_midnight", ends=last.astimezone(zoneinfo.ZoneInfo(timezone)).strftime("%d.%m %H:%M"))
    numbers = {number: dc.candidate_id for dc, number in day_candidates(s, day.id)}
    _clear_slots(s, day.id)
    count: dict[str, int] = {}
    for slot in slots:
        count[slot.station] = count.get(slot.station, 0) + 1
        st = by_code[slot.station]
        s.add(DaySlot(exam_day_id=day.id, attempt_id=_attempt_id(day.id, st, count[slot.station]), station_id=st.id,
                      candidate_id=numbers[slot.candidate], reading_starts_at=slot.reading_starts_at,
                      reading_s=plan.reading_s, performing_s=plan.performing_s))
    s.flush()
    audit.append(s, actor, DAY_GENERATE, str(day.id), {"slots": len(slots), "stations": len(stations),
                                                       "streams": len({x.stream for x in slots})})
    return len(slots)


def slots_of(s: Session, day_id: int) -> list[tuple[DaySlot, Station, str]]:
    q = (select(DaySlot, Station, Candidate.accreditation_number).join(Station, Station.id == DaySlot.station_id)
         .join(Candidate, Candidate.id == DaySlot.candidate_id).where(DaySlot.exam_day_id == day_id)
         .order_by(DaySlot.reading_starts_at, Station.code))
    return [(slot, st, number) for slot, st, number in s.execute(q)]


def change_slot(s: Session, day_id: int, slot_id: int | None, time: str, station_code: str, number: str,
                timezone: str, actor: str) -> DaySlot:
    """Edit a slot (or add one when slot_id is None): its time, station and candidate; refused when the station or
    the candidate would be in two attempts at once."""
    day, plan = draft(s, day_id)
    slot = None
    if slot_id is not None:
        slot = s.get(DaySlot, slot_id)
        if slot is None or slot.exam_day_id != day.id:
            raise DayError("", "no_slot", status=404)
    start = local_time(day.day, hhmm(time, "time"), timezone)
    stations = {st.code: st for st, _ in day_stations(s, day.id)}
    st = stations.get(station_code)
    if st is None:
        raise DayError("station", "not_day_station", code=station_code[:64])
    cand_id = next((dc.candidate_id for dc, n in day_candidates(s, day.id) if n == number), None)
    if cand_id is None:
        raise DayError("candidate", "not_on_list", value=number[:64])
    length = dt.timedelta(seconds=plan.reading_s + plan.performing_s + plan.changeover_s)
    for other, other_st, other_number in slots_of(s, day.id):
        if slot is not None and other.id == slot.id:
            continue
        if other.reading_starts_at < start + length and start < other.reading_starts_at + length:
            at = other.reading_starts_at.astimezone(zoneinfo.ZoneInfo(timezone)).strftime("%H:%M")
            if other.station_id == st.id:
                raise DayError("time", "station_busy", station=st.code, candidate=other_number, at=at)
            if other.candidate_id == cand_id:
                raise DayError("time", "candidate_busy", candidate=number, station=other_st.code, at=at)
    before = None if slot is None else {"attempt_id": slot.attempt_id, "at": slot.reading_starts_at.isoformat(),
                                        "station_id": slot.station_id, "candidate_id": slot.candidate_id}
    if slot is None or slot.station_id != st.id:
        used = set(s.scalars(select(DaySlot.attempt_id).where(DaySlot.exam_day_id == day.id)))
        n = 1
        while _attempt_id(day.id, st, n) in used:
            n += 1
        attempt_id = _attempt_id(day.id, st, n)
    else:
        attempt_id = slot.attempt_id
    if slot is None:
        slot = DaySlot(exam_day_id=day.id, reading_s=plan.reading_s, performing_s=plan.performing_s)
        s.add(slot)
    slot.attempt_id, slot.station_id, slot.candidate_id, slot.reading_starts_at = attempt_id, st.id, cand_id, start
    s.flush()
    audit.append(s, actor, DAY_SLOT, str(day.id), {"before": before, "after": {
        "attempt_id": attempt_id, "at": start.isoformat(), "station": st.code, "candidate": number}})
    return slot


def delete_slot(s: Session, day_id: int, slot_id: int, actor: str) -> None:
    day, _plan = draft(s, day_id)
    slot = s.get(DaySlot, slot_id)
    if slot is None or slot.exam_day_id != day.id:
        raise DayError("", "no_slot", status=404)
    audit.append(s, actor, DAY_SLOT, str(day.id), {"before": {"attempt_id": slot.attempt_id,
                                                              "at": slot.reading_starts_at.isoformat()},
                                                   "after": None})
    s.delete(slot)


def schedule_doc(s: Session, day_id: int) -> dict[str, Any]:
    """The day's slots in the exam clock's schedule format (station_agent/lifecycle.py parse_schedule)."""
    stems = {st.id: stem for st, stem in day_stations(s, day_id)}
    return {"attempts": [{
        "attempt_id": slot.attempt_id, "candidate": number, "station_id": st.code,
        "checklist": stems.get(st.id, ""), "reading_starts_at": slot.reading_starts_at.isoformat(),
        "reading_s": slot.reading_s, "performing_s": slot.performing_s,
    } for slot, st, number in slots_of(s, day_id)]}


def fix_day(s: Session, day_id: int, timezone: str, actor: str) -> ImportReport:
    """The slots go through the one schedule import (attempt rows, tasks, checklist versions); the day is then
    read-only and its slots are served to the stations."""
    day, plan = draft(s, day_id)
    doc = schedule_doc(s, day.id)
    if not doc["attempts"]:
        raise DayError("", "no_slots")
    ids = [a["attempt_id"] for a in doc["attempts"]]
    taken = s.scalar(select(Attempt.id).where(Attempt.id.in_(ids), or_(Attempt.exam_day_id.is_(None),
                                                                       Attempt.exam_day_id != day.id)).limit(1))
    if taken is not None:
        raise DayError("", "attempt_taken", attempt=taken)
    sp = s.get(Specialty, plan.specialty_id)
    assert sp is not None  # a plan's specialty is never deleted
    try:
        report = import_day(s, doc, sp.code, sp.name, day.title, actor, SHIPPED_CHECKLISTS, timezone, exam_day=day)
    except ScheduleImportError as exc:
        raise DayError("", "import", where=exc.where, problem=str(exc)) from None
    plan.fixed_at, plan.fixed_by = utcnow(), actor
    audit.append(s, actor, DAY_FIX, str(day.id), {"attempts": len(ids), "new": report.attempts_new,
                                                  "tasks": report.tasks})
    return report


def station_schedule(s: Session, station_code: str, now: dt.datetime) -> list[dict[str, Any]]:
    """The fixed days' slots of one station near `now`, for the exam clock."""
    q = (select(DaySlot, Candidate.accreditation_number, DayStation.checklist)
         .join(Station, Station.id == DaySlot.station_id)
         .join(Candidate, Candidate.id == DaySlot.candidate_id)
         .join(DayPlan, DayPlan.exam_day_id == DaySlot.exam_day_id)
         .join(DayStation, (DayStation.exam_day_id == DaySlot.exam_day_id) & (DayStation.station_id == Station.id))
         .where(Station.code == station_code, DayPlan.fixed_at.is_not(None),
                DaySlot.reading_starts_at >= now - SERVED_BEFORE, DaySlot.reading_starts_at <= now + SERVED_AFTER)
         .order_by(DaySlot.reading_starts_at))
    return [{"attempt_id": slot.attempt_id, "candidate": number, "station_id": station_code, "checklist": stem,
             "reading_starts_at": slot.reading_starts_at.isoformat(), "reading_s": slot.reading_s,
             "performing_s": slot.performing_s} for slot, number, stem in s.execute(q)]


# -- examiners ---------------------------------------------------------------------------------------------------


def assignments(s: Session, day_id: int) -> list[tuple[ExaminerAssignment, User, Station]]:
    """The examiners of the day's stations: assigned for this day, or for every day (exam_day_id None)."""
    q = (select(ExaminerAssignment, User, Station).join(User, User.id == ExaminerAssignment.user_id)
         .join(Station, Station.id == ExaminerAssignment.station_id)
         .join(DayStation, (DayStation.station_id == Station.id) & (DayStation.exam_day_id == day_id))
         .where(or_(ExaminerAssignment.exam_day_id == day_id, ExaminerAssignment.exam_day_id.is_(None)))
         .order_by(Station.code, User.login))
    return [(a, u, st) for a, u, st in s.execute(q)]


def assign(s: Session, day_id: int, login: str, station_code: str, actor: str) -> None:
    day, _plan = load(s, day_id)
    if closure(s, day.id) is not None:
        raise DayError("", "closed", status=409)
    user = s.scalar(select(User).where(User.login == login))
    if user is None or user.role != Role.EXAMINER or not user.active:
        raise DayError("examiner", "no_examiner", login=login[:64])
    st = next((st for st, _ in day_stations(s, day.id) if st.code == station_code), None)
    if st is None:
        raise DayError("station", "not_day_station", code=station_code[:64])
    same = select(ExaminerAssignment.id).where(
        ExaminerAssignment.user_id == user.id, ExaminerAssignment.station_id == st.id,
        or_(ExaminerAssignment.exam_day_id == day.id, ExaminerAssignment.exam_day_id.is_(None)))
    if s.scalar(same.limit(1)) is not None:
        raise DayError("examiner", "assigned_already", login=login, station=st.code)
    s.add(ExaminerAssignment(user_id=user.id, station_id=st.id, exam_day_id=day.id))
    audit.append(s, actor, DAY_ASSIGN, str(day.id), {"examiner": login, "station": st.code})


def unassign(s: Session, day_id: int, assignment_id: int, actor: str) -> None:
    """Only the day's own assignments are removed here (one for every day is the users page's)."""
    day, _plan = load(s, day_id)
    if closure(s, day.id) is not None:
        raise DayError("", "closed", status=409)
    row = s.get(ExaminerAssignment, assignment_id)
    if row is None or row.exam_day_id != day.id:
        raise DayError("", "no_assignment", status=404)
    user, st = s.get(User, row.user_id), s.get(Station, row.station_id)
    audit.append(s, actor, DAY_UNASSIGN, str(day.id), {"examiner": user.login if user else row.user_id,
                                                       "station": st.code if st else row.station_id})
    s.delete(row)
