"""What the observation room and the stations need to mark together (one source of truth: the server's events).

- ``GET /api/live/{station}/attempt`` (recordings.view; examiners only for their stations): the attempt running
  at the station now (the agent's live meta says which; else the exam day's schedule at server time; between
  attempts the last one, so that sheets can be finished), its phase and time left, the checklist (items, hash)
  and, for a role that may see marks, the caller's own sheet and next ``seq``. The page posts marks to
  ``POST /api/attempts/{attempt_id}/marks`` (routes/marks.py) in the shared mark-event format.
- ``GET /api/stations/{code}/marks?after=N&limit=M`` (station.marks; the token's own station): the events
  stored for the station's attempts with a cursor above N, oldest first, with ``next`` to pass as ``after``.
  The agent merges them into its journal by event_id (station_agent/mark_pull.py).
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cache
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from checklists.loader import ChecklistError, builtin_checklists, parse_checklist
from checklists.marks import WIRE_FIELDS
from checklists.model import PRESENTATIONS, Checklist

from ..live import LIVE_HUB, NAME_RE
from ..markformat import merged_sheets
from ..models import Attempt, ChecklistVersion, MarkEvent, Station
from ..roles import allowed, requires
from ..validate import CODE_RE
from ..web import ApiError, db_run, identity
from .exam_clock import _day_attempts
from .scope import examiner_may, own_station

routes = web.RouteTableDef()

MAX_PULL = 1000
RECENT_S = 15 * 60  # between attempts, the last one stays markable this long after its end


@cache
def _builtin() -> dict[str, Checklist]:
    """The shipped checklists (checklists/data) by content hash and by file stem."""
    out: dict[str, Checklist] = {}
    for cl in builtin_checklists():
        out[cl.content_hash] = cl
        out["stem:" + cl.source.rsplit("/", 1)[-1].removesuffix(".yaml")] = cl
    return out


def _checklist(s: Session, content_hash: str | None, stem: str | None) -> Checklist | None:
    """By hash (shipped, or a version uploaded to /api/checklist-versions), else the shipped file named in the day."""
    if content_hash:
        if content_hash in _builtin():
            return _builtin()[content_hash]
        source = s.scalar(select(ChecklistVersion.source).where(ChecklistVersion.sha256 == content_hash))
        if source:
            try:
                return parse_checklist(source, "checklist version " + content_hash[:12])
            except ChecklistError:
                return None
    return _builtin().get(f"stem:{stem}") if stem else None


def _when(value: Any) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _span(a: dict[str, Any]) -> tuple[dt.datetime, float, float] | None:
    start = _when(a.get("reading_starts_at"))
    reading, performing = a.get("reading_s"), a.get("performing_s")
    if start is None or not isinstance(reading, int | float) or not isinstance(performing, int | float):
        return None
    return start, float(reading), float(performing)


def phase_at(a: dict[str, Any], now: dt.datetime) -> tuple[str, float | None]:
    """The schedule's phase of an attempt at `now` and the seconds left in it (the agent's rule, lifecycle.py)."""
    span = _span(a)
    if span is None:
        return "unknown", None
    start, reading, performing = span
    t = (now - start).total_seconds()
    if t < 0:
        return "scheduled", -t
    if t < reading:
        return "reading", reading - t
    if t < reading + performing:
        return "performing", reading + performing - t
    return "done", 0.0


def current_of(day: list[dict[str, Any]], station: str, now: dt.datetime) -> dict[str, Any] | None:
    """The station's attempt in progress, else the last one ended within RECENT_S."""
    mine = [(span[0], a) for a in day if a.get("station_id") == station and (span := _span(a)) is not None]
    started = sorted(((t, a) for t, a in mine if t <= now), key=lambda p: p[0])
    if not started:
        return None
    a = started[-1][1]
    start, reading, performing = _span(a)  # type: ignore[misc]
    if (now - start).total_seconds() > reading + performing + RECENT_S:
        return None
    return a


def _meta(request: web.Request, station: str) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for (code, _camera), ch in sorted(request.app[LIVE_HUB].channels.items()):
        if code == station:
            meta.update({k: v for k, v in ch.meta.items() if v is not None})
    return meta


@routes.get("/api/live/{station}/attempt", allow_head=False)
@requires("recordings.view")
async def live_attempt(request: web.Request) -> web.Response:
    station = request.match_info["station"]
    if not NAME_RE.fullmatch(station):
        raise ApiError(400, "letters, digits, '_' or '-'", "URL station")
    who = identity(request)
    now = dt.datetime.now(dt.UTC)
    meta = _meta(request, station)
    day = _day_attempts(request)
    scheduled = current_of(day, station, now)
    attempt_id = meta.get("attempt_id") if isinstance(meta.get("attempt_id"), str) else None
    if attempt_id is None and scheduled is not None:
        attempt_id = scheduled.get("attempt_id")
    entry = next((a for a in day if a.get("attempt_id") == attempt_id and a.get("station_id") == station), None)
    may_see_marks = allowed("marks.view", who.principal)

    def query(s: Session) -> dict[str, Any]:
        st = s.scalar(select(Station).where(Station.code == station))
        # A station outside the examiner's assignments reads as missing (scope.py): no existence oracle.
        if st is None or not examiner_may(s, who, st.id, None):
            raise ApiError(404, f"no station {station!r}", "URL station")
        out: dict[str, Any] = {"station": station, "server_time": now.isoformat(timespec="milliseconds"),
                               "attempt": None, "checklist": None, "sheet": None,
                               "can_mark": allowed("marks.correct", who.principal)}
        if attempt_id is None or not CODE_RE.fullmatch(attempt_id):
            return out
        att = s.get(Attempt, attempt_id)
        if att is not None and att.station_id != st.id:
            return out  # meta or schedule naming another station's attempt: show nothing rather than mix
        rows = list(s.scalars(select(MarkEvent).where(MarkEvent.attempt_id == attempt_id).order_by(MarkEvent.id)))
        known_hash = rows[0].checklist_hash if rows else meta.get("checklist_hash")
        cl = _checklist(s, known_hash if isinstance(known_hash, str) else None,
                        str(entry.get("checklist")) if entry else None)
        phase, left = phase_at(entry, now) if entry else (meta.get("phase"), meta.get("time_left"))
        candidate = (entry or {}).get("candidate") or meta.get("candidate")
        out["attempt"] = {"attempt_id": attempt_id, "candidate": candidate,
                          "phase": phase if isinstance(phase, str) else None,
                          "time_left_s": round(float(left), 1) if isinstance(left, int | float) else None,
                          "on_server": att is not None}
        if cl is not None:
            out["checklist"] = {"title": cl.title, "content_hash": cl.content_hash,
                                "items": [{"number": i.number, "action": i.action, "critical": i.critical,
                                           "presentation": PRESENTATIONS.get(i.presentation, i.presentation)}
                                          for i in cl.items]}
        if may_see_marks and who.login:
            events = [{k: getattr(r, k) for k in WIRE_FIELDS} for r in rows]
            sheet = merged_sheets(events).get(who.login)
            out["sheet"] = {"marks": sheet["marks"] if sheet else {}, "finalised": bool(sheet and sheet["finalised"]),
                            "next_seq": max((r.seq for r in rows if r.examiner == who.login), default=0) + 1}
        return out

    return web.json_response(await db_run(request, query), headers={"Cache-Control": "no-store"})


def _int_query(request: web.Request, name: str, default: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,19}", raw) or int(raw) > hi:  # ASCII digits: isdigit() takes "²" and "١"
        raise ApiError(400, f"a whole number from 0 to {hi}", f"query {name}")
    return int(raw)


@routes.get("/api/stations/{code}/marks", allow_head=False)
@requires("station.marks")
async def station_marks(request: web.Request) -> web.Response:
    own_station(request, "reads only its own marks")
    who = identity(request)
    after = _int_query(request, "after", 0, 2**62)
    limit = max(1, _int_query(request, "limit", MAX_PULL, MAX_PULL))

    def query(s: Session) -> dict[str, Any]:
        rows = s.execute(
            select(MarkEvent, MarkEvent.id).join(Attempt, Attempt.id == MarkEvent.attempt_id)
            .where(Attempt.station_id == who.station_id, MarkEvent.id > after)
            .order_by(MarkEvent.id).limit(limit)
        ).all()
        events = [{k: getattr(r, k) for k in WIRE_FIELDS} | {"source": r.source} for r, _ in rows]
        return {"events": events, "next": rows[-1][1] if rows else after, "more": len(rows) == limit}

    return web.json_response(await db_run(request, query))
