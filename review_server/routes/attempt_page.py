"""The attempt review page: every camera of the station in sync with the sound, the checklist with each examiner's
marks and corrections, the score and result, and a timeline of marks, recording gaps and CPR figures.

- GET /attempts/{attempt_id}[?rec=KEY][&lang=en]: the page (examiners of the station, archivists); audited.
- GET /attempts/{attempt_id}/recordings/{key}/{track}: one track as one MP4 file with byte ranges (routes/
  track_file.py: the init file, an index, the media fragments), so that Chromium's plain <video> plays and seeks
  it without Media Source Extensions. Every request that may include the file's first byte is audited: a whole
  copy cannot be had without one, and a player's follow-up range requests make no noise.
The script and style (static/review/) are written into the page, so the review link page, which has no session,
needs no public asset route.

Media time: the recorder stamps each track with the recording's own clock (media/track.py), whose 0 the
station sends with the init files (`recordings.media_from`, station wall clock). A mark's `recording_offset_s`
counts from the attempt's start on the same wall clock (the station's own marks give that zero: wall_time minus
offset), so a mark is shown, and seeks the players, at offset − (media_from − zero) in every part of a
recording cut by a restart. Without media_from (older recordings) the offset is taken as media time. The
station's health events (routes/health_events.py, wall clock) are placed the same way; the timeline also
shows the gaps that the stored fragments reveal: missing fragments, holes between fragments, a track that
starts late or ends early.

The same rendering serves the appeal reviewer's time-limited link (routes/review_links.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from checklists.marks import MarkEvent as WireEvent

from .. import audit
from ..models import Attempt, Candidate, CprFigures, ExamDay, Fragment, MarkEvent, Recording, Station, Task
from ..pages import lang_of
from ..roles import requires
from ..scores import Outcome, attempt_outcome
from ..station_health import events_between
from ..validate import CODE_RE, parse_utc, path_ident
from ..web import ApiError, db_run, identity
from .scope import require_assigned
from .track_file import Piece, from_first_byte, send_track, track_pieces

routes = web.RouteTableDef()

ATTEMPT_VIEW = "attempt.view"  # the page was shown (audit action)
ATTEMPT_MEDIA = "attempt.media"  # a track was fetched from its first byte
STATIC = Path(__file__).resolve().parent.parent / "static" / "review"
CHUNK = 256 * 1024
GAP_TOLERANCE_S = 0.25  # fragments of one track follow each other exactly; more than this is a hole

TEXT: dict[str, dict[str, str]] = {
    "ru": {
        "title": "Попытка",
        "number": "Аккредитуемый №",
        "station": "Станция",
        "task": "Задание",
        "day": "День экзамена",
        "recording": "Запись",
        "no_recording": "Записи нет.",
        "play": "Воспроизвести",
        "pause": "Пауза",
        "timeline": "Шкала времени",
        "marks_row": "Отметки",
        "gaps_row": "Разрывы записи",
        "cpr_row": "СЛР: частота",
        "health_row": "Состояние станции",
        "health_note": "Предупреждения агента станции (камера, микрофон, диск, выгрузка, перезапуск); время — "
        "по часам станции.",
        "no_health": "Предупреждений не было.",
        "health_open": "не закончилось",
        "no_gaps": "Разрывов нет.",
        "gap.missing": "нет фрагмента",
        "gap.hole": "промежуток между фрагментами",
        "gap.late": "дорожка началась позже",
        "gap.early": "дорожка закончилась раньше",
        "gap.no_init": "нет начального файла дорожки: не воспроизводится",
        "checklist": "Оценочный лист",
        "item": "№",
        "action": "Действие",
        "critical": "критический пункт",
        "yes": "да",
        "no": "нет",
        "none": "—",
        "result": "Результат",
        "threshold": "порог",
        "of": "из",
        "critical_missed": "не выполнены критические пункты",
        "final": "листы подписаны",
        "not_final": "не все листы подписаны",
        "signed": "подписан",
        "unsigned": "не подписан",
        "rating": "Общая оценка",
        "history": "История отметок",
        "from": "было",
        "reason": "причина",
        "rejected": "не применено (после подписи без причины)",
        "at": "на",
        "cpr": "Показатели СЛР (справочно, отмечает член комиссии)",
        "cpr_first": "первая компрессия",
        "cpr_pause": "пауза",
        "cpr_none": "нет оценки по видео",
        "no_marks": "Отметок нет.",
        "recordings": "Записи попытки",
        "parts_note": "Запись из нескольких частей (перезапуск агента): на шкале каждой части — её отметки; "
        "для записей без времени начала части отметки показаны от начала попытки.",
        "other": "English",
        "link_until": "Ссылка действует до",
    },
    "en": {
        "title": "Attempt",
        "number": "Candidate No.",
        "station": "Station",
        "task": "Task",
        "day": "Exam day",
        "recording": "Recording",
        "no_recording": "No recording.",
        "play": "Play",
        "pause": "Pause",
        "timeline": "Timeline",
        "marks_row": "Marks",
        "gaps_row": "Recording gaps",
        "cpr_row": "CPR: rate",
        "health_row": "Station health",
        "health_note": "Warnings of the station's agent (camera, microphone, disk, upload, restart); times by the "
        "station's clock.",
        "no_health": "No warnings.",
        "health_open": "not ended",
        "no_gaps": "No gaps.",
        "gap.missing": "fragment missing",
        "gap.hole": "hole between fragments",
        "gap.late": "track starts late",
        "gap.early": "track ends early",
        "gap.no_init": "the track's init file is missing: it cannot play",
        "checklist": "Checklist",
        "item": "No.",
        "action": "Action",
        "critical": "critical item",
        "yes": "yes",
        "no": "no",
        "none": "—",
        "result": "Result",
        "threshold": "threshold",
        "of": "of",
        "critical_missed": "critical items not done",
        "final": "sheets signed",
        "not_final": "not every sheet is signed",
        "signed": "signed",
        "unsigned": "not signed",
        "rating": "Global rating",
        "history": "Mark history",
        "from": "was",
        "reason": "reason",
        "rejected": "not applied (after signing, without a reason)",
        "at": "at",
        "cpr": "CPR figures (informative; the examiner marks)",
        "cpr_first": "first compression",
        "cpr_pause": "pause",
        "cpr_none": "no estimate from video",
        "no_marks": "No marks.",
        "recordings": "Recordings of the attempt",
        "parts_note": "A recording in several parts (the agent restarted): each part's timeline shows its own "
        "marks; for recordings without a part start time, marks count from the start of the attempt.",
        "other": "Русский",
        "link_until": "Link valid until",
    },
}
RESULT_EN = {"сдано": "passed", "не сдано": "failed"}


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
        if src is video:
            for r in src.get("rate_series") or []:
                t, rate = (_num(r.get("t")), _num(r.get("rate"))) if isinstance(r, dict) else (None, None)
                if t is not None:
                    out["rate"].append((t - shift, rate))
    out["pauses"] = sorted(set(out["pauses"]))
    return out


def gather(s: Session, att: Attempt, recording_key: str | None) -> PageData:
    """Everything the page shows about one attempt (accreditation number only, never a name)."""
    cand = s.get(Candidate, att.candidate_id) if att.candidate_id else None
    station = s.get(Station, att.station_id)
    task = s.get(Task, att.task_id) if att.task_id else None
    day = s.get(ExamDay, att.exam_day_id) if att.exam_day_id else None
    recs = s.scalars(select(Recording).where(Recording.attempt_id == att.id).order_by(Recording.key)).all()
    chosen = next((r for r in recs if r.key == recording_key), None) if recording_key else (recs[0] if recs else None)
    if recording_key and chosen is None:
        raise ApiError(404, f"no recording {recording_key!r} for this attempt", "query rec")
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
    )


def marks_zero(s: Session, attempt_id: str) -> dt.datetime | None:
    """When the marks' recording_offset_s is 0 on the station's wall clock: its own marks say it (wall_time
    minus offset, both from the station's clock; marks made elsewhere carry another clock)."""
    rows = s.execute(select(MarkEvent.wall_time, MarkEvent.recording_offset_s).where(
        MarkEvent.attempt_id == attempt_id, MarkEvent.source.like("station:%"),
        MarkEvent.recording_offset_s.is_not(None))).all()
    zeros = []
    for wall, offset in rows:
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


# -- rendering ---------------------------------------------------------------------------------------------

e = html.escape


@functools.cache
def asset(name: str) -> str:
    """A file of static/review/, read once."""
    return (STATIC / name).read_text(encoding="utf-8")


def _pct(x: float, lang: str) -> str:
    text = f"{x:.1f}"
    return text.replace(".", ",") if lang == "ru" else text


def clock(t: float) -> str:
    """Seconds as m:ss.s (the page's time labels)."""
    m, sec = divmod(max(0.0, t), 60)
    return f"{int(m)}:{sec:04.1f}"


def _result(text: str, lang: str) -> str:
    return RESULT_EN.get(text, text) if lang == "en" else text


def _mark(value: bool | None, t: dict[str, str]) -> str:
    return t["none"] if value is None else (t["yes"] if value else t["no"])


def _at(ev: WireEvent) -> str:
    return ev.when.strftime("%d.%m.%Y %H:%M:%S UTC")


def _seek_button(t_s: float | None, t: dict[str, str]) -> str:
    if t_s is None:
        return ""
    return f' <button type="button" class="seek" data-t="{t_s:.3f}">{e(t["at"])} {clock(t_s)}</button>'


def _history(data: PageData, examiner: str, item: int, t: dict[str, str]) -> str:
    """Every mark event of one examiner on one item: who, when, value, what it corrected, why."""
    sheet = data.outcome.sheets[examiner]
    rejected = {ev.event_id for ev in sheet.rejected}
    corrections = {ev.event_id for ev in sheet.corrections}
    events = sorted((ev for ev in sheet.history + sheet.rejected if ev.kind == "mark" and ev.item == item),
                    key=lambda ev: ev.order_key())
    if not events:
        return ""
    lines, value = [], None
    for ev in events:
        parts = [f"<b>{_mark(ev.done, t)}</b>"]
        if ev.event_id not in rejected and value is not None and value != ev.done:
            parts.append(f"({e(t['from'])}: {_mark(value, t)})")
        parts.append(f"{e(_at(ev))} · {e(data.sources.get(ev.event_id, ev.examiner))}")
        if ev.reason:
            parts.append(f"· {e(t['reason'])}: {e(ev.reason)}")
        cls = "rejected" if ev.event_id in rejected else ("correction" if ev.event_id in corrections else "")
        if ev.event_id in rejected:
            parts.append(f"· <i>{e(t['rejected'])}</i>")
        else:
            value = ev.done
        lines.append(f'<li class="{cls}">{" ".join(parts)}{_seek_button(data.media_t(ev), t)}</li>')
    if len(events) == 1 and not events[0].reason and events[0].event_id not in rejected:
        return _seek_button(data.media_t(events[0]), t)  # marked once: just when, to watch it
    return f'<details><summary>{e(t["history"])} ({len(events)})</summary><ul class="history">{"".join(lines)}</ul>' \
        "</details>"


def _checklist(data: PageData, t: dict[str, str]) -> str:
    out = data.outcome
    examiners = sorted(out.sheets)
    if not examiners:
        return f"<p>{e(t['no_marks'])}</p>"
    cl = out.checklist
    numbers = cl.item_numbers if cl else sorted({n for sh in out.sheets.values() for n in sh.marks})
    head = "".join(
        f'<th>{e(ex)}<br><small>{e(t["signed"] if out.sheets[ex].finalised else t["unsigned"])}</small></th>'
        for ex in examiners
    )
    rows = []
    for n in numbers:
        item = cl.item(n) if cl else None
        action = e(item.action) if item else ""
        if item and item.critical:
            action += f' <strong class="critical">({e(t["critical"])})</strong>'
        figures = "".join(f'<li>{e(line)}</li>' for line in data.cpr_items.get(n, []))
        if figures:
            action += f'<ul class="cpr-figures">{figures}</ul>'
        cells = "".join(
            f'<td class="mark" data-examiner="{e(ex)}" data-value="{_mark(out.sheets[ex].marks.get(n), TEXT["en"])}">'
            f"{_mark(out.sheets[ex].marks.get(n), t)}{_history(data, ex, n, t)}</td>"
            for ex in examiners
        )
        rows.append(f'<tr data-item="{n}"><td>{n}</td><td>{action}</td>{cells}</tr>')
    ratings = ""
    if any(sh.rating is not None for sh in out.sheets.values()):
        cells = "".join(f"<td>{e(str(out.sheets[ex].rating) if out.sheets[ex].rating is not None else '—')}</td>"
                        for ex in examiners)
        ratings = f'<tr><td></td><td>{e(t["rating"])}</td>{cells}</tr>'
    return (
        f'<table class="checklist"><thead><tr><th>{e(t["item"])}</th><th>{e(t["action"])}</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}{ratings}</tbody></table>"
    )


def _score(data: PageData, lang: str, t: dict[str, str]) -> str:
    out = data.outcome
    if out.percent is None:
        return f'<p class="score" data-percent="">{e(t["result"])}: {e(out.note or t["no_marks"])}</p>'
    threshold = next(iter(out.scores.values())).threshold_percent
    per = "".join(
        f'<li data-examiner="{e(ex)}" data-percent="{sc.percent!r}">{e(ex)}: {sc.done} {e(t["of"])} {sc.total} '
        f"({_pct(sc.percent, lang)} %)"
        + (f"; {e(t['critical_missed'])}: {', '.join(map(str, sc.critical_missed))}" if sc.critical_missed else "")
        + "</li>"
        for ex, sc in sorted(out.scores.items())
    )
    cls = "passed" if out.passed else "failed"
    return (
        f'<div class="score"><p class="result {cls}" data-percent="{out.percent!r}" data-result="{e(out.result)}">'
        f'{e(t["result"])}: <b>{_pct(out.percent, lang)} % — {e(_result(out.result, lang))}</b> '
        f'({e(t["threshold"])} {_pct(threshold, lang)} %; {e(t["final"] if out.final else t["not_final"])})</p>'
        f"<ul>{per}</ul></div>"
    )


def _x(t_s: float, duration: float) -> str:
    return f"{100 * min(max(t_s, 0.0), duration) / duration:.3f}%"


def _timeline(data: PageData, t: dict[str, str]) -> str:
    dur = data.duration
    points = []
    for ex, sheet in sorted(data.outcome.sheets.items()):
        rejected = {ev.event_id for ev in sheet.rejected}
        for ev in sorted(sheet.history + sheet.rejected, key=lambda ev: ev.order_key()):
            at = data.media_t(ev)
            if ev.kind != "mark" or at is None:
                continue
            cls = "mark-point " + ("yes" if ev.done else "no") + (" rejected" if ev.event_id in rejected else "")
            label = f"{ex}: {ev.item} — {_mark(ev.done, t)} ({clock(at)})"
            points.append(
                f'<button type="button" class="{cls}" style="left:{_x(at, dur)}" '
                f'data-t="{at:.3f}" data-item="{ev.item}" data-examiner="{e(ex)}" '
                f'title="{e(label)}" aria-label="{e(label)}">{ev.item}</button>'
            )
    gaps = "".join(
        f'<div class="band gap" style="left:{_x(g.start, dur)};width:{_x(g.end - g.start, dur)}" '
        f'title="{e(g.track)}: {e(t["gap." + g.kind])} {clock(g.start)}–{clock(g.end)}" data-track="{e(g.track)}" '
        f'data-kind="{g.kind}"></div>'
        for g in data.gaps
    )
    rows = [
        f'<div class="lane"><span class="lane-label">{e(t["marks_row"])}</span><div class="lane-body marks">'
        f'{"".join(points)}<div class="playhead"></div></div></div>',
        f'<div class="lane"><span class="lane-label">{e(t["gaps_row"])}</span><div class="lane-body">{gaps}'
        '<div class="playhead"></div></div></div>',
    ]
    if data.cpr is not None:
        rows.append(_cpr_lane(data.cpr, dur, t))
    if data.health:
        bands = "".join(
            f'<div class="band health" style="left:{_x(max(h["t0"], 0.0), dur)};'
            f'width:{_x((h["t1"] if h["t1"] is not None else dur) - max(h["t0"], 0.0), dur)}" '
            f'data-code="{e(h["code"])}" '
            f'title="{e(h["text"])}"></div>'
            for h in data.health if h["t0"] is not None
        )
        rows.append(f'<div class="lane"><span class="lane-label">{e(t["health_row"])}</span><div class="lane-body">'
                    f'{bands}<div class="playhead"></div></div></div>')
    ticks = "".join(
        f'<span class="tick" style="left:{_x(s, dur)}">{clock(s)}</span>' for s in _tick_times(dur)
    )
    return (
        f'<section class="timeline" aria-label="{e(t["timeline"])}" data-duration="{dur:.3f}">{"".join(rows)}'
        f'<div class="lane"><span class="lane-label"></span><div class="lane-body ticks">{ticks}</div></div></section>'
    )


def _tick_times(duration: float) -> list[float]:
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300) if duration / s <= 10), 600)
    return [float(s) for s in range(0, int(duration) + 1, step)]


def _cpr_lane(cpr: dict[str, Any], dur: float, t: dict[str, str]) -> str:
    """Rate per second as a line against the 100–120/min band, pauses as bands, the first compression."""
    lo_rate, hi_rate = 60.0, 160.0

    def y(rate: float) -> float:
        return 40.0 * (1 - (min(max(rate, lo_rate), hi_rate) - lo_rate) / (hi_rate - lo_rate))

    segments, current = [], []
    for t_s, rate in cpr["rate"]:
        if rate is None:
            if current:
                segments.append(current)
            current = []
            continue
        current.append(f"{1000 * t_s / dur:.1f},{y(rate):.1f}")
    if current:
        segments.append(current)
    lines = "".join(f'<polyline points="{" ".join(seg)}"/>' for seg in segments)
    target = f'<rect class="target" x="0" width="1000" y="{y(120):.1f}" height="{y(100) - y(120):.1f}"/>'
    svg = f'<svg class="rate" viewBox="0 0 1000 40" preserveAspectRatio="none" aria-hidden="true">{target}{lines}</svg>'
    pauses = "".join(
        f'<div class="band cpr-pause" style="left:{_x(s, dur)};width:{_x(n, dur)}" data-start="{s:.2f}" '
        f'data-length="{n:.2f}" title="{e(t["cpr_pause"])} {clock(s)}–{clock(s + n)}"></div>'
        for s, n in cpr["pauses"]
    )
    first = ""
    if cpr["first"] is not None:
        first = (f'<button type="button" class="first-compression" style="left:{_x(cpr["first"], dur)}" '
                 f'data-t="{cpr["first"]:.3f}" title="{e(t["cpr_first"])} {clock(cpr["first"])}">▲</button>')
    none = f'<span class="no-estimate">{e(t["cpr_none"])}: {e(cpr["no_estimate"])}</span>' \
        if cpr["no_estimate"] is not None else ""
    return (f'<div class="lane cpr"><span class="lane-label">{e(t["cpr_row"])}</span><div class="lane-body">'
            f'{svg}{pauses}{first}{none}<div class="playhead"></div></div></div>')


def _players(data: PageData, media_base: str, t: dict[str, str], lang: str) -> str:
    if not data.tracks:
        return f"<p>{e(t['no_recording'])}</p>"
    videos = []
    for i, tr in enumerate(data.tracks):
        role = "master" if i == 0 else "slave"
        # The first camera carries the sound and the controls; the others follow its clock, muted.
        attrs = 'controls preload="auto"' if i == 0 else 'muted preload="auto"'
        src = f"{media_base}/{e(data.recording or '')}/{e(tr.id)}"
        videos.append(
            f'<figure class="camera"><video class="{role}" {attrs} playsinline data-track="{e(tr.id)}" '
            f'src="{src}"></video><figcaption>{e(tr.id)}</figcaption></figure>'
        )
    choose = ""
    if len(data.recordings) > 1:
        links = " ".join(
            f'<a href="?rec={e(k)}&amp;lang={lang}"{" aria-current=page" if k == data.recording else ""}>{e(k)}</a>'
            for k in data.recordings
        )
        choose = f'<p class="recordings">{e(t["recordings"])}: {links}</p><p class="note">{e(t["parts_note"])}</p>'
    return (
        f'{choose}<div class="cameras">{"".join(videos)}</div>'
        f'<p class="controls"><button type="button" id="play">{e(t["play"])}</button> '
        f'<span id="clock" aria-live="off">0:00.0</span></p>'
    )


def _health_list(data: PageData, t: dict[str, str]) -> str:
    """The station's warnings of this attempt's time: when (station clock), what, a seek where placed."""
    def when(iso: str | None) -> str:
        return dt.datetime.fromisoformat(iso).strftime("%H:%M:%S") if iso else t["health_open"]

    items = "".join(
        f'<li data-code="{e(h["code"])}">{when(h["started_at"])}–{when(h["ended_at"])}: {e(h["text"])}'
        f'{_seek_button(max(h["t0"], 0.0) if h["t0"] is not None else None, t)}</li>'
        for h in data.health
    ) or f"<li>{e(t['no_health'])}</li>"
    return f'<h2>{e(t["health_row"])}</h2><ul class="health">{items}</ul><p class="note">{e(t["health_note"])}</p>'


def render(data: PageData, lang: str, media_base: str, banner: str = "") -> str:
    """The page. `media_base` is where the tracks are fetched from (…/{key}/{track} is appended)."""
    t = TEXT[lang]
    other = "en" if lang == "ru" else "ru"
    gaps_list = "".join(
        f'<li>{e(g.track)}: {e(t["gap." + g.kind])}, {clock(g.start)}–{clock(g.end)}'
        f'{_seek_button(g.start, t)}</li>'
        for g in data.gaps
    ) or f"<li>{e(t['no_gaps'])}</li>"
    labels = json.dumps({"play": t["play"], "pause": t["pause"]}, ensure_ascii=False).replace("<", "\\u003c")
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{e(t["title"])} {e(data.attempt_id)} — {e(t["number"])} {e(data.number)}</title>'
        f'<link rel="icon" href="data:,"><style>{asset("review.css")}</style></head><body>'
        f'<header><h1>{e(t["title"])} {e(data.attempt_id)}: {e(t["number"])} <span class="number">{e(data.number)}'
        f'</span></h1><p>{e(t["station"])} {e(data.station)} · {e(t["task"])}: {e(data.task)} · {e(t["day"])}: '
        f'{e(data.day)}{" · " + e(t["recording"]) + " " + e(data.recording) if data.recording else ""}</p>'
        f'{banner}<p><a href="?lang={other}{"&amp;rec=" + e(data.recording) if data.recording else ""}">'
        f'{e(t["other"])}</a></p></header>'
        f'<main><section class="media">{_players(data, media_base, t, lang)}{_timeline(data, t)}'
        f'<h2>{e(t["gaps_row"])}</h2><ul class="gaps">{gaps_list}</ul>{_health_list(data, t)}'
        f'</section><section class="sheet">{_score(data, lang, t)}<h2>{e(t["checklist"])}</h2>'
        f"{_checklist(data, t)}</section></main>"
        f'<script type="application/json" id="labels">{labels}</script>'
        f'<script>{asset("attempt.js")}</script></body></html>'
    )


# -- routes ------------------------------------------------------------------------------------------------


def _attempt(s: Session, request: web.Request, attempt_id: str) -> Attempt:
    att = s.get(Attempt, attempt_id)
    missing = ApiError(404, f"no attempt {attempt_id!r}", "URL attempt_id")
    if att is None:
        raise missing
    require_assigned(s, identity(request), att.station_id, att.exam_day_id, missing)
    return att


@routes.get("/attempts/{attempt_id}", allow_head=False)
@requires("attempts.review")
async def attempt_page(request: web.Request) -> web.Response:
    attempt_id = path_ident(request, "attempt_id")
    rec = request.query.get("rec")
    if rec is not None and not CODE_RE.fullmatch(rec):
        raise ApiError(400, f"must match {CODE_RE.pattern}", "query rec")
    lang = lang_of(request.query.get("lang"))
    who = identity(request)

    def q(s: Session) -> str:
        att = _attempt(s, request, attempt_id)
        data = gather(s, att, rec)
        audit.append(s, who.actor, ATTEMPT_VIEW, att.id, {"recording": data.recording, "ip": request.remote})
        return render(data, lang, f"/attempts/{att.id}/recordings")

    return web.Response(text=await db_run(request, q), content_type="text/html")


@routes.get("/attempts/{attempt_id}/recordings/{key}/{track}", allow_head=False)
@requires("attempts.review")
async def attempt_track(request: web.Request) -> web.StreamResponse:
    attempt_id = path_ident(request, "attempt_id")
    key, track = path_ident(request, "key"), path_ident(request, "track")
    who = identity(request)

    def q(s: Session) -> list[Piece]:
        att = _attempt(s, request, attempt_id)
        rec = s.scalar(select(Recording).where(Recording.key == key, Recording.attempt_id == att.id))
        if rec is None:
            raise ApiError(404, "no such recording for this attempt", "URL key")
        pieces = track_pieces(s, rec, track)
        if from_first_byte(request.headers.get("Range")):
            audit.append(s, who.actor, ATTEMPT_MEDIA, key, {"attempt_id": att.id, "track": track})
        return pieces

    return await send_track(request, await db_run(request, q))
