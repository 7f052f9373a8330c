"""What the attempt review page shows, and its rules, with no web framework: the attempt's data (gather), the gaps
the stored fragments reveal (tracks_of), the CPR figures on the timeline (cpr_timeline), where a mark sits on a
recording's media clock (marks_zero, PageData.media_t), and the view the template draws (timeline, checklist
rows, history), numbers placed and formatted here so that templates/attempt.html only lays them out.

Media time: the recorder stamps each track with the recording's own clock (media/track.py), whose 0 the
station sends with the init files (`recordings.media_from`, station wall clock). A mark's `recording_offset_s`
counts from the attempt's start on the same wall clock (the station's own marks give that zero: wall_time minus
offset), so a mark is shown, and seeks the players, at offset − (media_from − zero) in every part of a
recording cut by a restart. Without media_from (older recordings) the offset is taken as media time. The
station's health events (routes/health_events.py, wall clock) are placed the same way; the timeline also
shows the gaps that the stored fragments reveal: missing fragments, holes between fragments, a track that
starts late or ends early.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from checklists.marks import MarkEvent as WireEvent

from . import flags as observer_flags
from .i18n import section
from .models import Attempt, Candidate, CprFigures, ExamDay, Fragment, MarkEvent, Recording, Station, Task
from .renditions import PENDING
from .renditions import State as RenditionState
from .renditions import states as rendition_states
from .scores import Outcome, attempt_outcome
from .station_health import events_between
from .storage import MediaStorage
from .validate import parse_utc

TEMPLATE = "attempt.html"
GAP_TOLERANCE_S = 0.25  # fragments of one track follow each other exactly; more than this is a hole


class RecordingNotFound(LookupError):
    """The page was asked for a recording (?rec=) that is not this attempt's."""


@dataclass
class Track:
    id: str
    start: float | None  # the first and last media times of its fragments (the recording's clock)
    end: float | None


@dataclass
class Gap:
    track: str
    start: float
    end: float
    kind: str  # missing | hole | late | early | no_init


@dataclass
class PageData:
    attempt_id: str
    number: str
    station: str
    task: str
    day: str
    recordings: list[str]
    recording: str | None
    tracks: list[Track]
    gaps: list[Gap]
    outcome: Outcome
    sources: dict[str, str]  # event_id -> who sent it (station:CODE / user:LOGIN)
    cpr: dict[str, Any] | None
    cpr_items: dict[int, list[str]] = field(default_factory=dict)
    shift: float = 0.0  # seconds from the marks' zero to this recording's media time 0
    span: tuple[float, float] | None = None  # one part of several: marks outside it belong to another part
    health: list[dict[str, Any]] = field(default_factory=list)  # station health events; t0/t1: media times
    renditions: dict[str, RenditionState] = field(default_factory=dict)  # tracks the browser cannot decode
    flags: list[observer_flags.Placed] = field(default_factory=list)  # observers' flags, placed on this recording
    room: str = ""  # the station's room, drawn over the picture with the centre (ident.py)
    media_from: dt.datetime | None = None  # this recording's media time 0 on the wall: the frames' own time

    @property
    def rendition_pending(self) -> bool:
        return any(r.state == PENDING for r in self.renditions.values())

    def media_t(self, ev: Any) -> float | None:
        """Where a mark is on this recording's media clock (None: no offset, or made during another part)."""
        if ev.recording_offset_s is None:
            return None
        at = ev.recording_offset_s - self.shift
        return None if self.span is not None and not self.span[0] <= at <= self.span[1] else at

    @property
    def duration(self) -> float:
        ends = [t.end for t in self.tracks if t.end is not None]
        marks = [t for sh in self.outcome.sheets.values() for e in sh.history + sh.rejected
                 if (t := self.media_t(e)) is not None]
        return max([*ends, *marks, 1.0])


# -- gathering ---------------------------------------------------------------------------------------------


def tracks_of(s: Session, rec: Recording) -> tuple[list[Track], list[Gap]]:
    """A recording's tracks (playable parts in order) and the gaps its fragment rows reveal."""
    frags = s.scalars(
        select(Fragment).where(Fragment.recording_id == rec.id).order_by(Fragment.track, Fragment.seq)
    ).all()
    by_track: dict[str, list[Fragment]] = {}
    for f in frags:
        by_track.setdefault(f.track, []).append(f)
    tracks, gaps = [], []
    for tid, fs in sorted(by_track.items()):
        media = [f for f in fs if f.kind == "media"]
        starts = [f.start_s for f in media if f.start_s is not None]
        ends = [f.end_s for f in media if f.end_s is not None]
        track = Track(tid, min(starts, default=None), max(ends, default=None))
        tracks.append(track)
        if not fs or fs[0].kind != "init":
            gaps.append(Gap(tid, track.start or 0.0, track.end or 0.0, "no_init"))
        prev: Fragment | None = None
        for f in media:
            if prev is not None and prev.end_s is not None and f.start_s is not None:
                kind = "missing" if f.seq != prev.seq + 1 else "hole"
                if kind == "missing" or f.start_s - prev.end_s > GAP_TOLERANCE_S:
                    gaps.append(Gap(tid, prev.end_s, f.start_s, kind))
            prev = f
    first = min((t.start for t in tracks if t.start is not None), default=None)
    last = max((t.end for t in tracks if t.end is not None), default=None)
    for t in tracks:
        if t.start is not None and first is not None and t.start - first > 1.0:
            gaps.append(Gap(t.id, first, t.start, "late"))
        if t.end is not None and last is not None and last - t.end > 1.0:
            gaps.append(Gap(t.id, t.end, last, "early"))
    return tracks, sorted(gaps, key=lambda g: (g.start, g.track))


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


def cpr_timeline(report: dict[str, Any], shift: float = 0.0) -> dict[str, Any]:
    """What the timeline draws from an `osce-cpr-figures/1` report (only its shape is checked on upload, so
    every number is checked again here): rate per second, pauses, the first compression, or why none; moved
    `shift` seconds earlier (the report counts from another part's media time 0)."""
    video = report.get("video") if isinstance(report.get("video"), dict) else None
    manikin = report.get("manikin") if isinstance(report.get("manikin"), dict) else None
    out: dict[str, Any] = {"rate": [], "pauses": [], "first": None, "no_estimate": None}
    if video is not None and not video.get("estimate"):
        out["no_estimate"] = str(video.get("reason") or "")[:80]
    for src in (video if video and video.get("estimate") else None, manikin):
        if src is None:
            continue
        for p in src.get("pauses") or []:
            start, length = (_num(p.get("start")), _num(p.get("length"))) if isinstance(p, dict) else (None, None)
            if start is not None and length is not None and length > 0:
                out["pauses"].append((start - shift, length))
        if out["first"] is None and (first := _num(src.get("first_compression_s"))) is not None:
            out["first"] = first - shift
        if src is video and video is not None:
            for r in video.get("rate_series") or []:
                t, rate = (_num(r.get("t")), _num(r.get("rate"))) if isinstance(r, dict) else (None, None)
                if t is not None:
                    out["rate"].append((t - shift, rate))
    out["pauses"] = sorted(set(out["pauses"]))
    return out


def gather(s: Session, att: Attempt, recording_key: str | None, storage: MediaStorage | None = None) -> PageData:
    """Everything the page shows about one attempt (accreditation number only, never a name). With `storage`, the
    tracks the browser cannot decode are found and their renditions asked for (review_server/renditions.py)."""
    cand = s.get(Candidate, att.candidate_id) if att.candidate_id else None
    station = s.get(Station, att.station_id)
    task = s.get(Task, att.task_id) if att.task_id else None
    day = s.get(ExamDay, att.exam_day_id) if att.exam_day_id else None
    recs = s.scalars(select(Recording).where(Recording.attempt_id == att.id).order_by(Recording.key)).all()
    chosen = next((r for r in recs if r.key == recording_key), None) if recording_key else (recs[0] if recs else None)
    if recording_key and chosen is None:
        raise RecordingNotFound(f"no recording {recording_key!r} for this attempt")
    tracks, gaps = tracks_of(s, chosen) if chosen else ([], [])
    rows = s.execute(select(MarkEvent.event_id, MarkEvent.source).where(MarkEvent.attempt_id == att.id)).all()
    origin = chosen.media_from if chosen else None
    zero = marks_zero(s, att.id) or min((r.media_from for r in recs if r.media_from), default=None)
    shift = (origin - zero).total_seconds() if origin and zero else 0.0
    cpr_row = s.get(CprFigures, att.id)
    cpr, cpr_items = None, {}
    if cpr_row is not None:
        try:
            report = json.loads(cpr_row.body)
            cpr = cpr_timeline(report, _cpr_shift(report, origin))
            cpr_items = {int(k): [str(x) for x in v] for k, v in (report.get("items") or {}).items()}
        except (ValueError, AttributeError, TypeError):
            cpr, cpr_items = None, {}  # stored as uploaded and checked then; unreadable now: shown as absent
    end_s = max([t.end or 0.0 for t in tracks] or [0.0])
    health = events_between(s, att.station_id, origin, origin + dt.timedelta(seconds=end_s) if origin else None,
                            att.id)
    for ev in health:
        for key, when in (("t0", ev["started_at"]), ("t1", ev["ended_at"])):
            ev[key] = (dt.datetime.fromisoformat(when) - origin).total_seconds() if origin and when else None
    return PageData(
        attempt_id=att.id,
        number=cand.accreditation_number if cand else "—",
        station=station.code if station else "—",
        task=task.title if task else "—",
        day=day.day.strftime("%d.%m.%Y") if day else "—",
        recordings=[r.key for r in recs],
        recording=chosen.key if chosen else None,
        tracks=tracks,
        gaps=gaps,
        outcome=attempt_outcome(s, att.id),
        sources={r.event_id: r.source for r in rows},
        cpr=cpr,
        cpr_items=cpr_items,
        shift=shift,
        span=(-1.0, end_s + 1.0) if origin and len(recs) > 1 else None,
        health=health,
        renditions=rendition_states(s, storage, chosen) if chosen is not None and storage is not None else {},
        flags=observer_flags.on_recording(s, att.id, chosen),
        room=station.room if station else "",
        media_from=origin,
    )


def marks_zero(s: Session, attempt_id: str) -> dt.datetime | None:
    """When the marks' recording_offset_s is 0 on the station's wall clock: its own marks say it (wall_time
    minus offset, both from the station's clock; marks made elsewhere carry another clock)."""
    rows = s.execute(select(MarkEvent.wall_time, MarkEvent.recording_offset_s).where(
        MarkEvent.attempt_id == attempt_id, MarkEvent.source.like("station:%"),
        MarkEvent.recording_offset_s.is_not(None))).all()
    zeros = []
    for wall, offset in rows:
        if offset is None:  # not selected; for the type checker
            continue
        with contextlib.suppress(ValueError):
            zeros.append(parse_utc(wall) - dt.timedelta(seconds=offset))
    return sorted(zeros)[len(zeros) // 2] if zeros else None


def _cpr_shift(report: dict[str, Any], origin: dt.datetime | None) -> float:
    """CPR figures count from the media time 0 of the part they name (video.media_from); this recording's may
    be another part's."""
    video = report.get("video")
    when = video.get("media_from") if isinstance(video, dict) else None
    if origin is None or not isinstance(when, str):
        return 0.0
    try:
        return (origin - parse_utc(when)).total_seconds()
    except ValueError:
        return 0.0



# -- the view: numbers placed and formatted for templates/attempt.html ---------------------------------------


def clock(t: float) -> str:
    """Seconds as m:ss.s (the page's time labels)."""
    m, sec = divmod(max(0.0, t), 60)
    return f"{int(m)}:{sec:04.1f}"


def position(t_s: float, duration: float) -> str:
    """Where a moment sits along a timeline lane, as a CSS percentage (attempt.js places it)."""
    return f"{100 * min(max(t_s, 0.0), duration) / duration:.3f}%"


def tick_times(duration: float) -> list[float]:
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300) if duration / s <= 10), 600)
    return [float(s) for s in range(0, int(duration) + 1, step)]


@dataclass
class MarkPoint:
    examiner: str
    item: int
    done: bool | None
    t: float
    rejected: bool

    @property
    def css(self) -> str:
        return "mark-point " + ("yes" if self.done else "no") + (" rejected" if self.rejected else "")


@dataclass
class Band:
    """A stretch of a timeline lane: a recording gap, a station warning or a CPR pause."""

    left: str
    width: str
    start: float
    end: float


@dataclass
class HistoryEntry:
    """One mark event of one examiner on one item, and what it changed."""

    event: WireEvent
    source: str
    was: bool | None  # the value it replaced, when it changed one
    rejected: bool
    correction: bool
    t: float | None  # where it is on this recording's media clock (a seek), if anywhere

    @property
    def css(self) -> str:
        return "rejected" if self.rejected else ("correction" if self.correction else "")

    @property
    def when(self) -> str:
        return self.event.when.strftime("%d.%m.%Y %H:%M:%S UTC")


@dataclass
class Cell:
    """One examiner's mark on one item, with its history (or, marked once and plainly, just when)."""

    examiner: str
    value: bool | None
    history: list[HistoryEntry]

    @property
    def only_when(self) -> HistoryEntry | None:
        one = self.history[0] if len(self.history) == 1 else None
        return one if one is not None and not one.event.reason and not one.rejected else None


@dataclass
class Row:
    number: int
    action: str
    critical: bool
    figures: list[str]
    cells: list[Cell]


def mark_points(data: PageData) -> list[MarkPoint]:
    points = []
    for ex, sheet in sorted(data.outcome.sheets.items()):
        rejected = {ev.event_id for ev in sheet.rejected}
        for ev in sorted(sheet.history + sheet.rejected, key=lambda ev: ev.order_key()):
            at = data.media_t(ev)
            if ev.kind == "mark" and at is not None and ev.item is not None:
                points.append(MarkPoint(ex, ev.item, ev.done, at, ev.event_id in rejected))
    return points


def history(data: PageData, examiner: str, item: int) -> list[HistoryEntry]:
    """Every mark event of one examiner on one item: who, when, value, what it corrected, why."""
    sheet = data.outcome.sheets[examiner]
    rejected = {ev.event_id for ev in sheet.rejected}
    corrections = {ev.event_id for ev in sheet.corrections}
    events = sorted((ev for ev in sheet.history + sheet.rejected if ev.kind == "mark" and ev.item == item),
                    key=lambda ev: ev.order_key())
    out: list[HistoryEntry] = []
    value: bool | None = None
    for ev in events:
        was = value if ev.event_id not in rejected and value is not None and value != ev.done else None
        out.append(HistoryEntry(ev, data.sources.get(ev.event_id, ev.examiner), was, ev.event_id in rejected,
                                ev.event_id in corrections, data.media_t(ev)))
        if ev.event_id not in rejected:
            value = ev.done
    return out


def checklist_rows(data: PageData) -> list[Row]:
    out = data.outcome
    cl = out.checklist
    numbers = cl.item_numbers if cl else sorted({n for sh in out.sheets.values() for n in sh.marks})
    rows = []
    for n in numbers:
        item = cl.item(n) if cl else None
        cells = [Cell(ex, out.sheets[ex].marks.get(n), history(data, ex, n)) for ex in sorted(out.sheets)]
        rows.append(Row(n, item.action if item else "", bool(item and item.critical), data.cpr_items.get(n, []),
                        cells))
    return rows


def band(start: float, end: float, duration: float) -> Band:
    return Band(position(start, duration), position(end - start, duration), start, end)


@dataclass
class CprLane:
    lines: list[str]  # polyline points, one per run of rates (viewBox 1000 × 40)
    target_y: str
    target_height: str
    pauses: list[Band]
    first: float | None
    first_left: str
    no_estimate: str | None


def cpr_lane(cpr: dict[str, Any], dur: float) -> CprLane:
    """Rate per second as a line against the 100–120/min band, pauses as bands, the first compression."""
    lo_rate, hi_rate = 60.0, 160.0

    def y(rate: float) -> float:
        return 40.0 * (1 - (min(max(rate, lo_rate), hi_rate) - lo_rate) / (hi_rate - lo_rate))

    segments: list[list[str]] = []
    current: list[str] = []
    for t_s, rate in cpr["rate"]:
        if rate is None:
            if current:
                segments.append(current)
            current = []
            continue
        current.append(f"{1000 * t_s / dur:.1f},{y(rate):.1f}")
    if current:
        segments.append(current)
    first = cpr["first"]
    return CprLane([" ".join(seg) for seg in segments], f"{y(120):.1f}", f"{y(100) - y(120):.1f}",
                   [band(s, s + n, dur) for s, n in cpr["pauses"]], first,
                   position(first, dur) if first is not None else "", cpr["no_estimate"])


def health_bands(data: PageData, dur: float) -> list[tuple[dict[str, Any], Band]]:
    return [(h, band(max(h["t0"], 0.0), h["t1"] if h["t1"] is not None else dur, dur))
            for h in data.health if h["t0"] is not None]


def wall_time(iso: str | None) -> str | None:
    """A station warning's start or end on the station's clock (None: not ended)."""
    return dt.datetime.fromisoformat(iso).strftime("%H:%M:%S") if iso else None


def flag_points(data: PageData) -> list[tuple[observer_flags.Placed, str]]:
    """The flags on this recording's timeline (one part of several: those made during it), with their places."""
    lo, hi = data.span if data.span is not None else (-math.inf, math.inf)
    dur = data.duration
    return [(p, position(p.t, dur)) for p in data.flags if p.t is not None and lo <= p.t <= hi]


def view(data: PageData) -> dict[str, Any]:
    """What templates/attempt.html draws, beside `data` itself."""
    dur = data.duration
    return {
        "data": data,
        "duration": dur,
        "points": mark_points(data),
        "flag_points": flag_points(data),
        "gap_bands": [(g, band(g.start, g.end, dur)) for g in data.gaps],
        "health_bands": health_bands(data, dur),
        "cpr_lane": cpr_lane(data.cpr, dur) if data.cpr is not None else None,
        "ticks": [(position(s, dur), clock(s)) for s in tick_times(dur)],
        "rows": checklist_rows(data),
        "examiners": sorted(data.outcome.sheets),
        "threshold": next(iter(data.outcome.scores.values())).threshold_percent if data.outcome.scores else None,
    }


def ident_of(data: PageData, centre: dict[str, str]) -> dict[str, Any]:
    """What static/pages/ident.js draws over each camera: the identification, media time 0 on the wall, the zone."""
    who = {k: centre.get(k, "") for k in ("region", "centre_code", "centre_name")}
    return {"ident": who | {"room": data.room, "station": data.station if data.station != "—" else "",
                            "number": data.number if data.number != "—" else ""},
            "media_from": data.media_from.isoformat() if data.media_from else None,
            "tz": centre.get("timezone", "Europe/Moscow")}


def context(data: PageData, lang: str, media_base: str, link_until: str | None = None,
            centre: dict[str, str] | None = None) -> dict[str, Any]:
    """The template's context: the view, where the tracks are fetched from (…/{key}/{track} is appended), the
    formatters, the texts the page's script shows, the appeal link's expiry banner if any, and the identification
    drawn over the pictures (`centre`: ident.centre_of(config) and its timezone)."""
    texts = section(lang, "attempt")
    return view(data) | {
        "media_base": media_base,
        "clock": clock,
        "position": position,
        "wall_time": wall_time,
        "texts": {"play": texts["play"], "pause": texts["pause"]},
        "link_until": link_until,
        "ident": ident_of(data, centre or {}),
    }
