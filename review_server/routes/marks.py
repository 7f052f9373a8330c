"""Mark events: batch ingest from stations (idempotent by event_id), and the examiner's corrections and
finalisation from the server's pages (audited). Events are append-only; scores are derived elsewhere.

Event JSON (format owned by checklists/marks.py):
  {"event_id": UUID, "attempt_id": str, "station_id": station code, "examiner": str,
   "kind": "mark"|"rating"|"finalise"|"reopen", "item": int|null, "done": bool|null, "rating": int|null,
   "reason": str|null, "checklist_hash": 64 hex, "wall_time": ISO-8601 UTC, "recording_offset_s": float|null,
   "seq": int}
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from checklists.marks import WIRE_FIELDS
from media.cpr.figures import MAX_REPORT_BYTES, check_report

from .. import audit, scores
from ..auth import Identity
from ..markformat import check_with_contract, merged_sheets
from ..models import Attempt, CprFigures, MarkEvent, Station, utcnow
from ..roles import requires
from ..validate import CODE_RE, SHA256_RE, Fields, path_ident
from ..web import CONFIG, ApiError, db_run, identity, read_json
from .scope import require_assigned

routes = web.RouteTableDef()

KINDS = ("mark", "rating", "finalise", "reopen")
EVENT_FIELDS = WIRE_FIELDS  # one definition of a mark event: checklists/marks.py


def parse_event(obj: Any, where: str) -> dict[str, Any]:
    f = Fields(obj, where, allowed=set(EVENT_FIELDS))
    ev = {
        "event_id": f.uuid("event_id"),
        "attempt_id": f.ident("attempt_id", CODE_RE),
        "station_id": f.ident("station_id", CODE_RE),
        "examiner": f.text("examiner", max_len=128),
        "kind": f.choice("kind", KINDS),
        "item": f.integer("item", required=False, lo=1, hi=100_000),
        "done": f.boolean("done", required=False),
        "rating": f.integer("rating", required=False, lo=-1000, hi=1000),
        "reason": f.text("reason", required=False, max_len=2000),
        "checklist_hash": f.ident("checklist_hash", SHA256_RE),
        "wall_time": f.utc_time("wall_time"),
        "recording_offset_s": f.number("recording_offset_s", required=False, hi=1e7),
        "seq": f.integer("seq"),
    }
    if not ev["examiner"].strip():
        raise ApiError(422, "required", f.where("examiner"))
    if ev["kind"] == "mark" and (ev["item"] is None or ev["done"] is None):
        raise ApiError(422, "a 'mark' event needs item and done", f.where("item" if ev["item"] is None else "done"))
    if ev["kind"] == "rating" and ev["rating"] is None:
        raise ApiError(422, "a 'rating' event needs rating", f.where("rating"))
    check_with_contract(obj, where)
    return ev


def _audit_new_event(s: Session, actor: str, ev: dict[str, Any]) -> None:
    """Every finalisation and reopening, and every correction (an event carrying a reason), is audited."""
    if ev["kind"] == "finalise":
        action = audit.FINALISE
    elif ev["kind"] == "reopen":
        action = audit.REOPEN
    elif (ev["reason"] or "").strip():
        action = audit.MARK_CORRECTION
    else:
        return
    details = {k: ev[k] for k in ("event_id", "examiner", "kind", "item", "done", "rating", "reason")}
    audit.append(s, actor, action, ev["attempt_id"], details)


def _as_dict(row: MarkEvent) -> dict[str, Any]:
    return {k: getattr(row, k) for k in EVENT_FIELDS}


def store_events(
    s: Session, events: list[dict[str, Any]], source: str, station: Station, where: str = "events"
) -> tuple[list[str], list[str]]:
    """Insert the events not seen before; return (new ids, duplicate ids). Same id, other content: 409."""
    new: list[str] = []
    dup: list[str] = []
    seen: dict[str, dict[str, Any]] = {}
    for i, ev in enumerate(events):
        eid = ev["event_id"]
        if eid in seen:
            if seen[eid] != ev:
                raise ApiError(422, f"event_id {eid} appears twice with different content", f"{where}[{i}]")
            dup.append(eid)
            continue
        seen[eid] = ev
        existing = s.scalar(select(MarkEvent).where(MarkEvent.event_id == eid))
        if existing is not None:
            if _as_dict(existing) != ev:
                raise ApiError(409, f"event_id {eid} was already stored with different content", f"{where}[{i}]")
            dup.append(eid)
            continue
        att = s.get(Attempt, ev["attempt_id"])
        if att is None:
            # Stations create attempts offline; the schedule links them to candidates later.
            s.add(Attempt(id=ev["attempt_id"], station_id=station.id))
            s.flush()
        elif att.station_id != station.id:
            raise ApiError(409, f"attempt {ev['attempt_id']!r} belongs to another station", f"{where}[{i}].attempt_id")
        other = s.scalar(
            select(MarkEvent.checklist_hash).where(
                MarkEvent.attempt_id == ev["attempt_id"], MarkEvent.checklist_hash != ev["checklist_hash"]
            )
        )
        if other is not None:  # the merge rule forbids mixing checklist versions in one attempt
            raise ApiError(409, f"attempt's other events use checklist {other}", f"{where}[{i}].checklist_hash")
        s.add(MarkEvent(**ev, source=source))
        s.flush()
        _audit_new_event(s, source, ev)
        new.append(eid)
    s.flush()
    # The stored result (protocol, archive search) follows every new event: a finalise, reopen or correction.
    fresh = set(new)
    scores.refresh(s, sorted({ev["attempt_id"] for ev in events if ev["event_id"] in fresh}))
    return new, dup


@routes.post("/api/marks")
@requires("station.marks")
async def ingest_marks(request: web.Request) -> web.Response:
    """Body {"events": [event, ...]}. All or nothing: one bad event refuses the batch, naming it.
    Reply {"accepted": [new event_ids], "duplicates": [event_ids already stored]}."""
    body = Fields(await read_json(request), allowed={"events"})
    raw = body._get("events", True)
    limit = request.app[CONFIG].max_mark_batch
    if not isinstance(raw, list):
        raise ApiError(422, "expected a list of events", "events")
    if len(raw) > limit:
        raise ApiError(413, f"{len(raw)} events in one batch; the limit is {limit}", "events")
    who = identity(request)
    events = [parse_event(obj, f"events[{i}]") for i, obj in enumerate(raw)]
    for i, ev in enumerate(events):
        if ev["station_id"] != who.station_code:
            raise ApiError(403, f"this token belongs to station {who.station_code!r}", f"events[{i}].station_id")

    def store(s: Session) -> tuple[list[str], list[str]]:
        station = s.get(Station, who.station_id)
        assert station is not None  # the token's station: tokens are revoked, stations never deleted
        return store_events(s, events, who.actor, station)

    new, dup = await db_run(request, store)
    return web.json_response({"accepted": new, "duplicates": dup})


@routes.put("/api/attempts/{attempt_id}/cpr-figures")
@requires("station.upload")
async def put_cpr_figures(request: web.Request) -> web.Response:
    """A station's CPR figures report for its attempt (`osce-cpr-figures/1`, media/cpr/FORMATS.md), stored as
    sent and exported as cpr_figures.json. Informative only: it marks nothing. A new report replaces the old one
    (audited); the same bytes again change nothing. The attempt is created if the station has not sent marks yet."""
    attempt_id = path_ident(request, "attempt_id")
    who = identity(request)
    body = await read_json(request)
    raw = await request.read()  # cached by aiohttp: the bytes read_json parsed
    if len(raw) > MAX_REPORT_BYTES:
        raise ApiError(413, f"the report is {len(raw)} bytes; the limit is {MAX_REPORT_BYTES}", "body")
    try:
        check_report(body)
    except ValueError as exc:
        raise ApiError(422, str(exc), "body") from None
    sha = hashlib.sha256(raw).hexdigest()
    station_id = who.station_id
    assert station_id is not None  # station.upload: station tokens only

    def store(s: Session) -> dict[str, Any]:
        att = s.get(Attempt, attempt_id)
        if att is None:
            s.add(Attempt(id=attempt_id, station_id=station_id))
            s.flush()
        elif att.station_id != station_id:
            raise ApiError(409, f"attempt {attempt_id!r} belongs to another station", "URL attempt_id")
        row = s.get(CprFigures, attempt_id)
        if row is not None and row.sha256 == sha:
            return {"attempt_id": attempt_id, "sha256": sha, "stored": False}
        details = {"sha256": sha, "replaces": row.sha256 if row is not None else None}
        if row is None:
            s.add(CprFigures(attempt_id=attempt_id, body=raw.decode("utf-8"), sha256=sha, uploaded_by=who.actor))
        else:
            row.body, row.sha256, row.uploaded_by, row.uploaded_at = raw.decode("utf-8"), sha, who.actor, utcnow()
        audit.append(s, who.actor, audit.CPR_FIGURES, attempt_id, details)
        return {"attempt_id": attempt_id, "sha256": sha, "stored": True}

    return web.json_response(await db_run(request, store))


def _signed_by(s: Session, attempt_id: str, examiner: str | None) -> bool:
    """Whether the examiner's sheet for the attempt is signed now (merge rule of checklists/marks.py)."""
    rows = s.scalars(select(MarkEvent).where(MarkEvent.attempt_id == attempt_id, MarkEvent.examiner == examiner))
    sheet = merged_sheets([_as_dict(r) for r in rows]).get(examiner or "")
    return sheet is not None and bool(sheet["finalised"])


def _attempt_for_examiner(s: Session, who: Identity, attempt_id: str) -> tuple[Attempt, Station]:
    att = s.get(Attempt, attempt_id)
    missing = ApiError(404, f"no attempt {attempt_id!r}", "URL attempt_id")
    if att is None:
        raise missing
    require_assigned(s, who, att.station_id, att.exam_day_id, missing)
    return att, s.get(Station, att.station_id)  # type: ignore[return-value]


@routes.get("/api/attempts/{attempt_id}/marks", allow_head=False)
@requires("marks.view")
async def list_marks(request: web.Request) -> web.Response:
    attempt_id = path_ident(request, "attempt_id")
    who = identity(request)

    def q(s: Session) -> list[dict[str, Any]]:
        _attempt_for_examiner(s, who, attempt_id)
        rows = s.scalars(select(MarkEvent).where(MarkEvent.attempt_id == attempt_id).order_by(MarkEvent.id))
        return [_as_dict(r) | {"source": r.source} for r in rows]

    return web.json_response({"attempt_id": attempt_id, "events": await db_run(request, q)})


async def _examiner_event(request: web.Request, kinds: tuple[str, ...], correction: bool) -> web.Response:
    attempt_id = path_ident(request, "attempt_id")
    who = identity(request)
    body = await read_json(request)
    # The server fills in who and where; client-sent examiner/attempt/station must agree with them.
    station_code = await db_run(request, lambda s: _attempt_for_examiner(s, who, attempt_id)[1].code)
    for name, must in (("examiner", who.login), ("attempt_id", attempt_id), ("station_id", station_code)):
        if body.get(name) is not None and body[name] != must:
            raise ApiError(422, f"must be {must!r} (or left out)", name)
        body[name] = must
    if "kind" not in body and len(kinds) == 1:
        body["kind"] = kinds[0]
    for name in EVENT_FIELDS:  # the wire format lists every field; the page may leave the empty ones out
        body.setdefault(name, None)
    ev = parse_event(body, "")
    if ev["kind"] not in kinds:
        raise ApiError(422, f"expected kind {' or '.join(kinds)}", "kind")

    def store(s: Session) -> dict[str, Any]:
        _att, station = _attempt_for_examiner(s, who, attempt_id)
        # Marking beside the live picture is ordinary marking; once this examiner has signed the sheet, a
        # change is a correction and needs a reason (the merge rule would not apply it otherwise).
        if correction and not (ev["reason"] or "").strip() and _signed_by(s, attempt_id, who.login):
            raise ApiError(422, "the sheet is signed: a correction needs a reason", "reason")
        new, dup = store_events(s, [ev], who.actor, station, where="body")
        return {"accepted": new, "duplicates": dup}

    return web.json_response(await db_run(request, store))


@routes.post("/api/attempts/{attempt_id}/marks")
@requires("marks.correct")
async def correct_mark(request: web.Request) -> web.Response:
    """An examiner's mark from the observation room, or, after signing, a correction with a reason (audited)."""
    return await _examiner_event(request, ("mark", "rating"), correction=True)


@routes.post("/api/attempts/{attempt_id}/finalise")
@requires("marks.correct")
async def finalise(request: web.Request) -> web.Response:
    """The examiner signs off the attempt: one 'finalise' event; audited."""
    return await _examiner_event(request, ("finalise",), correction=False)


@routes.get("/api/attempts/{attempt_id}/sheets", allow_head=False)
@requires("marks.view")
async def sheets(request: web.Request) -> web.Response:
    """Each examiner's current sheet for the attempt, derived from its events by the shared merge rule."""
    attempt_id = path_ident(request, "attempt_id")
    who = identity(request)

    def q(s: Session) -> list[dict[str, Any]]:
        _attempt_for_examiner(s, who, attempt_id)
        rows = s.scalars(select(MarkEvent).where(MarkEvent.attempt_id == attempt_id).order_by(MarkEvent.id))
        return [_as_dict(r) for r in rows]

    return web.json_response({"attempt_id": attempt_id, "sheets": merged_sheets(await db_run(request, q))})
