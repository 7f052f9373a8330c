"""Is an exam day complete, and what is missing (the page: routes/days_close.py). No web framework here.

Per attempt of the day:
- media: at least one recording; every track with its init; the gaps its fragments reveal (attempt_view.tracks_of:
  missing fragments, holes, a track starting late or ending early) and the time between the parts of a recording
  cut by a restart, each explained by a station health event over that time (station_health), else missing; media
  shorter than the attempt's planned reading + performing (when the plan is known) by more than SHORT_TOLERANCE_S,
  beyond what the explained gaps account for;
- hashes: the day's media check (media_check.py) finished, covering every fragment the day has now, and no
  fragment failed it;
- sheets: every examiner assigned to the station that day (or every day) and every examiner who marked has
  signed (finalised) their sheet, and at least `examiners_per_station` sheets are signed;
- result: the marks merge and score against a checklist version the server holds (scores.attempt_outcome), so
  that the protocol has the attempt's result.
Per day: each station has its examiners assigned; the protocol of each specialty builds with every row final.

Each missing thing is a Missing(kind, params, link); the page says it in its reader's language
(i18n "completeness" section, "miss.<kind>").
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .attempt_view import tracks_of
from .day_lock import closure
from .markformat import merged_sheets
from .media_check import newer_fragments
from .models import (
    Attempt,
    Candidate,
    DayClosure,
    DayMediaCheck,
    DaySlot,
    ExamDay,
    ExaminerAssignment,
    HealthEvent,
    MarkEvent,
    Recording,
    Specialty,
    Station,
    Task,
    User,
)
from .protocol import NOT_FINAL, ProtocolError, build
from .scores import attempt_outcome, wire

SHORT_TOLERANCE_S = 3.0
PART_GAP_S = 1.0  # between two parts of a recording more than this is a gap
SLACK = dt.timedelta(seconds=2)  # a health event this close to a gap explains it (clocks, fragment edges)


@dataclass
class Missing:
    kind: str
    link: str
    params: dict[str, Any] = field(default_factory=dict)
    attempt_id: str | None = None


@dataclass
class Explained:
    start: float
    end: float
    texts: list[str]


@dataclass
class AttemptState:
    attempt_id: str
    number: str
    station: str
    task: str
    starts: str  # local HH:MM when planned
    recordings: int = 0
    fragments: int = 0
    media_s: float = 0.0
    planned_s: float | None = None
    explained: list[Explained] = field(default_factory=list)
    signed: list[str] = field(default_factory=list)
    unsigned: list[str] = field(default_factory=list)
    result: str = ""
    percent: float | None = None
    missing: list[Missing] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass
class MediaCheckState:
    state: str  # never | running | done | stale
    done: int = 0
    total: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    finished_at: dt.datetime | None = None
    started_by: str = ""
    newer: int = 0


@dataclass
class Report:
    day: ExamDay
    closure: DayClosure | None
    attempts: list[AttemptState]
    day_missing: list[Missing]
    media_check: MediaCheckState
    protocols: list[dict[str, Any]]

    @property
    def missing(self) -> list[Missing]:
        return [*self.day_missing, *(m for a in self.attempts for m in a.missing)]

    @property
    def complete(self) -> bool:
        return bool(self.attempts) and not self.missing

    def summary(self) -> dict[str, Any]:
        """What the close's audit row keeps: counts and each missing thing (kind, attempt, params)."""
        return {"attempts": len(self.attempts), "missing": len(self.missing),
                "items": [{"kind": m.kind, "attempt_id": m.attempt_id, **m.params} for m in self.missing[:200]],
                "media_check": {"state": self.media_check.state, "fragments": self.media_check.total,
                                "failures": len(self.media_check.failures)},
                "protocols": [{"specialty": p["code"], "rows": p["rows"], "final": p["final"]}
                              for p in self.protocols]}


def attempt_link(attempt_id: str) -> str:
    return f"/attempts/{attempt_id}"


def _explaining(s: Session, station_id: int, attempt_id: str, start: dt.datetime | None,
                end: dt.datetime | None) -> list[str]:
    """The station's health events over [start, end] (or, with no wall times, raised during the attempt)."""
    cond: Any
    if start is not None and end is not None:
        cond = (HealthEvent.started_at <= end + SLACK) & (
            HealthEvent.ended_at.is_(None) | (HealthEvent.ended_at >= start - SLACK))
    else:
        cond = HealthEvent.attempt_id == attempt_id
    rows = s.scalars(select(HealthEvent).where(HealthEvent.station_id == station_id, cond)
                     .order_by(HealthEvent.started_at))
    return [r.text or r.code for r in rows]


def _media(s: Session, att: Attempt, state: AttemptState) -> None:
    recs = s.scalars(select(Recording).where(Recording.attempt_id == att.id).order_by(Recording.media_from,
                                                                                      Recording.key)).all()
    state.recordings = len(recs)
    link = attempt_link(att.id)
    if not recs:
        state.missing.append(Missing("media_none", link, {}, att.id))
        return
    explained_s = 0.0
    spans: list[tuple[dt.datetime | None, float, float]] = []  # per part: media_from, first start, last end
    for rec in recs:
        tracks, gaps = tracks_of(s, rec)
        state.fragments += len(rec.fragments)
        starts = [t.start for t in tracks if t.start is not None]
        ends = [t.end for t in tracks if t.end is not None]
        if starts and ends:
            spans.append((rec.media_from, min(starts), max(ends)))
            state.media_s += max(ends) - min(starts)
        for gap in gaps:
            if gap.kind == "no_init":
                state.missing.append(Missing("media_no_init", link, {"recording": rec.key, "track": gap.track},
                                             att.id))
                continue
            at = rec.media_from
            window = (at + dt.timedelta(seconds=gap.start), at + dt.timedelta(seconds=gap.end)) if at else (None, None)
            texts = _explaining(s, att.station_id, att.id, *window)
            if texts:
                state.explained.append(Explained(gap.start, gap.end, texts))
                explained_s += gap.end - gap.start
            else:
                state.missing.append(Missing("media_gap", link, {
                    "recording": rec.key, "track": gap.track, "gap": gap.kind, "start": round(gap.start, 1),
                    "end": round(gap.end, 1)}, att.id))
    for (a_from, _a0, a_end), (b_from, b0, _b1) in zip(spans, spans[1:], strict=False):
        if a_from is None or b_from is None:
            continue
        gap_start, gap_end = a_from + dt.timedelta(seconds=a_end), b_from + dt.timedelta(seconds=b0)
        seconds = (gap_end - gap_start).total_seconds()
        if seconds <= PART_GAP_S:
            continue
        texts = _explaining(s, att.station_id, att.id, gap_start, gap_end)
        if texts:
            state.explained.append(Explained(0.0, seconds, texts))
            explained_s += seconds
        else:
            state.missing.append(Missing("media_restart", link, {"seconds": round(seconds, 1)}, att.id))
    if state.planned_s is not None and state.media_s + explained_s < state.planned_s - SHORT_TOLERANCE_S:
        state.missing.append(Missing("media_short", link, {"media_s": round(state.media_s, 1),
                                                           "planned_s": round(state.planned_s, 1)}, att.id))


def _sheets(s: Session, att: Attempt, state: AttemptState, required: list[str], signers: int) -> None:
    rows = s.scalars(select(MarkEvent).where(MarkEvent.attempt_id == att.id).order_by(MarkEvent.id)).all()
    link = attempt_link(att.id)
    try:
        sheets = merged_sheets([wire(r) for r in rows])
    except Exception:  # markformat answers ApiError(409) for events that cannot merge: the result says so below
        sheets = {}
    state.signed = sorted(ex for ex, sh in sheets.items() if sh["finalised"])
    state.unsigned = sorted((set(required) | set(sheets)) - set(state.signed))
    for ex in state.unsigned:
        state.missing.append(Missing("sheet_unsigned", link, {"examiner": ex}, att.id))
    if len(state.signed) < signers and not state.unsigned:
        state.missing.append(Missing("sheets_few", link, {"signed": len(state.signed), "needed": signers}, att.id))
    out = attempt_outcome(s, att.id)
    state.percent, state.result = out.percent, out.result
    if out.percent is None and rows:
        state.missing.append(Missing("result", link, {"note": out.note_key or "unmerged"}, att.id))


def _media_check(s: Session, day_id: int, running: bool) -> MediaCheckState:
    row = s.get(DayMediaCheck, day_id)
    if row is None:
        return MediaCheckState("never")
    st = MediaCheckState("done", row.fragments_done, row.fragments_total, list(row.failures or []), row.finished_at,
                         row.started_by, newer_fragments(s, day_id, row.max_fragment_id))
    if row.finished_at is None:
        st.state = "running" if running else "interrupted"
    elif st.newer:
        st.state = "stale"
    return st


def build_report(s: Session, day_id: int, timezone: str, signers: int, planned: Mapping[str, float] | None = None,
                 media_check_running: bool = False) -> Report:
    """The day's completeness. planned: attempt id -> planned reading + performing seconds from elsewhere (the
    schedule file); the day's own slots say it for a day set up in the browser."""
    day = s.get(ExamDay, day_id)
    if day is None:
        raise LookupError(day_id)
    tz = zoneinfo.ZoneInfo(timezone)
    slots = {x.attempt_id: x for x in s.scalars(select(DaySlot).where(DaySlot.exam_day_id == day_id))}
    q = (select(Attempt, Candidate.accreditation_number, Station, Task.title)
         .join(Station, Station.id == Attempt.station_id)
         .outerjoin(Candidate, Candidate.id == Attempt.candidate_id)
         .outerjoin(Task, Task.id == Attempt.task_id)
         .where(Attempt.exam_day_id == day_id))
    assigned: dict[int, list[str]] = {}
    for station_id, login in s.execute(
            select(ExaminerAssignment.station_id, User.login).join(User, User.id == ExaminerAssignment.user_id)
            .where(or_(ExaminerAssignment.exam_day_id == day_id, ExaminerAssignment.exam_day_id.is_(None)),
                   User.active.is_(True))):
        assigned.setdefault(station_id, []).append(login)
    check = _media_check(s, day_id, media_check_running)
    failed: dict[str, list[dict[str, Any]]] = {}
    for f in check.failures:
        failed.setdefault(f.get("attempt_id") or "", []).append(f)
    attempts: list[AttemptState] = []
    stations: dict[str, int] = {}
    for att, number, st, task in s.execute(q):
        slot = slots.get(att.id)
        state = AttemptState(att.id, number or "—", st.code, task or "",
                             slot.reading_starts_at.astimezone(tz).strftime("%H:%M") if slot else "")
        if slot is not None:
            state.planned_s = float(slot.reading_s + slot.performing_s)
        elif planned and att.id in planned:
            state.planned_s = planned[att.id]
        _media(s, att, state)
        for f in failed.get(att.id, []):
            state.missing.append(Missing("media_hash", f"/days/{day_id}/completeness#media",
                                         {"recording": f["recording"], "track": f["track"], "seq": f["seq"],
                                          "problem": f["problem"]}, att.id))
        _sheets(s, att, state, assigned.get(att.station_id, []), signers)
        attempts.append(state)
        stations[st.code] = len(assigned.get(att.station_id, []))
    attempts.sort(key=lambda a: (a.starts, a.station, a.attempt_id))
    day_missing: list[Missing] = []
    setup = f"/admin/days/{day_id}#examiners"
    for code, n in sorted(stations.items()):
        if n < signers:
            day_missing.append(Missing("examiners", setup, {"station": code, "assigned": n, "needed": signers}))
    media = f"/days/{day_id}/completeness#media"
    if attempts and check.state != "done":
        day_missing.append(Missing(f"check_{check.state}", media, {"newer": check.newer}))
    protocols = _protocols(s, day, attempts)
    for p in protocols:
        if not p["built"]:
            day_missing.append(Missing("protocol_error", p["pdf"], {"specialty": p["code"], "why": p["why"]}))
    return Report(day, closure(s, day_id), attempts, day_missing, check, protocols)


def _protocols(s: Session, day: ExamDay, attempts: list[AttemptState]) -> list[dict[str, Any]]:
    """Per specialty of the day's attempts: the protocol, whether it builds and how many of its rows are final."""
    codes = sorted(set(s.scalars(
        select(Specialty.code).join(Task, Task.specialty_id == Specialty.id).join(Attempt, Attempt.task_id == Task.id)
        .where(Attempt.exam_day_id == day.id))))
    out = []
    for code in codes:
        name = s.scalar(select(Specialty.name).where(Specialty.code == code)) or code
        query = urlencode({"day": day.day.isoformat(), "specialty": code, "format": "pdf"})
        entry: dict[str, Any] = {"code": code, "name": name, "pdf": f"/api/protocols?{query}", "built": True,
                                 "why": "", "rows": 0, "final": 0}
        try:
            p = build(s, day.day, code)
        except ProtocolError as exc:
            entry.update(built=False, why=str(exc))
        else:
            tasks = p.task_codes
            entry["rows"] = len(p.rows)
            entry["final"] = sum(1 for r in p.rows if r.overall(tasks) != NOT_FINAL)
        out.append(entry)
    return out
