"""Mark events: batch ingest from stations (idempotent by event_id), and the examiner's corrections and
finalisation from the server's pages (audited). Events are append-only; scores are derived elsewhere.

Event JSON (format owned by checklists/marks.py):
  {"event_id": UUID, "attempt_id": str, "station_id": station code, "examiner": str,
   "kind": "mark"|"rating"|"finalise"|"reopen", "item": int|null, "done": bool|null, "rating": int|null,
   "reason": str|null, "checklist_hash": 64 hex, "wall_time": ISO-8601 UTC, "recording_offset_s": float|null,
   "seq": int}
A station's event also carries "proof" {"key_id", "sig"}: the examiner's tablet key signed it, and the examiner
is the one that key was issued to (review_server/tablet_credentials.py); an event whose proof does not hold is
refused (403, audited once per burst per station). On the server's pages the session is the examiner, and the
server stamps when (wall_time, recording_offset_s) and the order (seq): nothing of who or when comes from the page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from checklists.marks import WIRE_FIELDS, utc_now_iso
from checklists.marks import MarkEvent as WireEvent
from media.cpr.figures import MAX_REPORT_BYTES, check_report

from .. import audit, scores
from ..attempt_owner import station_attempt
from ..attempt_view import marks_zero
from ..auth import LOGIN_RE, Identity
from ..markformat import check_with_contract, merged_sheets
from ..models import Attempt, CprFigures, MarkEvent, Recording, Station, utcnow
from ..retention import active_holds, held_message
from ..roles import requires
from ..tablet_credentials import MARKS_REFUSED, MARKS_UNSIGNED, MarkCheck
from ..throttle import note_burst
from ..validate import CODE_RE, SHA256_RE, Fields, path_ident
from ..web import CONFIG, ApiError, db_run, identity, read_json
from .scope import require_assigned

routes = web.RouteTableDef()

KINDS = ("mark", "rating", "finalise", "reopen")
REFUSAL_QUIET_S = 15 * 60  # a station's refused marks: one audit row per burst (throttle.note_burst)
EVENT_FIELDS = WIRE_FIELDS  # one definition of a mark event: checklists/marks.py
CPR_FIGURES_REFUSED = "attempt.cpr_figures.refused"  # a replacement refused: the attempt is held


def parse_event(obj: Any, where: str, proof: bool = False) -> dict[str, Any]:
    f = Fields(obj, where, allowed=set(EVENT_FIELDS) | ({"proof"} if proof else set()))
    ev = {
        "event_id": f.uuid("event_id"),
        "attempt_id": f.ident("attempt_id", CODE_RE),
        "station_id": f.ident("station_id", CODE_RE),
        "examiner": f.ident("examiner", LOGIN_RE),  # an account's login: who signed in on the tablet or page
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
    if ev["kind"] == "mark" and (ev["item"] is None or ev["done"] is None):
        raise ApiError(422, "a 'mark' event needs item and done", f.where("item" if ev["item"] is None else "done"))
    if ev["kind"] == "rating" and ev["rating"] is None:
        raise ApiError(422, "a 'rating' event needs rating", f.where("rating"))
    check_with_contract({k: v for k, v in obj.items() if k != "proof"}, where)
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
    s: Session, events: list[dict[str, Any]], source: str, station: Station, where: str = "events",
    proofs: dict[str, dict[str, str]] | None = None,
) -> tuple[list[str], list[str]]:
    """Insert the events not seen before (a station's with the proof that was checked); return (new ids,
    duplicate ids). Same id, other content: 409."""
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
        station_attempt(s, station.id, ev["attempt_id"], f"{where}[{i}].attempt_id")
        other = s.scalar(
            select(MarkEvent.checklist_hash).where(
                MarkEvent.attempt_id == ev["attempt_id"], MarkEvent.checklist_hash != ev["checklist_hash"]
            )
        )
        if other is not None:  # the merge rule forbids mixing checklist versions in one attempt
            raise ApiError(409, f"attempt's other events use checklist {other}", f"{where}[{i}].checklist_hash")
        proof = (proofs or {}).get(eid) or {}
        s.add(MarkEvent(**ev, source=source, key_id=proof.get("key_id"), signature=proof.get("sig")))
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
    events = [parse_event(obj, f"events[{i}]", proof=True) for i, obj in enumerate(raw)]
    for i, ev in enumerate(events):
        if ev["station_id"] != who.station_code:
            raise ApiError(403, f"this token belongs to station {who.station_code!r}", f"events[{i}].station_id")
    proofs = {ev["event_id"]: obj.get("proof") for ev, obj in zip(events, raw, strict=True)}
    cfg = request.app[CONFIG]

    def store(s: Session) -> dict[str, Any]:
        station = s.get(Station, who.station_id)
        assert station is not None  # the token's station: tokens are revoked, stations never deleted
        check = MarkCheck(s, station, cfg.accept_unsigned_station_marks)
        for i, (ev, obj) in enumerate(zip(events, raw, strict=True)):
            why = check.refusal(WireEvent.from_json({k: obj[k] for k in EVENT_FIELDS}), obj.get("proof"))
            if why is not None:  # who marked is not proven: nothing is stored; the refusal is audited
                note_burst(s, f"marks-refused:{station.code}", REFUSAL_QUIET_S, who.actor,
                           MARKS_REFUSED, ev["attempt_id"],
                           {"event_id": ev["event_id"], "examiner": ev["examiner"], "kind": ev["kind"], "why": why})
                return {"refused": i, "why": why}  # committed: the audit row stays, nothing else was written
        if check.unsigned:
            note_burst(s, f"marks-unsigned:{station.code}", REFUSAL_QUIET_S, who.actor,
                       MARKS_UNSIGNED, events[0]["attempt_id"], {"events": check.unsigned[:20]})
        new, dup = store_events(s, events, who.actor, station, proofs=proofs)
        return {"accepted": new, "duplicates": dup}

    result = await db_run(request, store)
    if "refused" in result:
        raise ApiError(403, f"refused: {result['why']}", f"events[{result['refused']}].proof")
    return web.json_response(result)


@routes.put("/api/attempts/{attempt_id}/cpr-figures")
@requires("station.upload")
async def put_cpr_figures(request: web.Request) -> web.Response:
    """A station's CPR figures report for its attempt (`osce-cpr-figures/1`, media/cpr/FORMATS.md), stored as
    sent and exported as cpr_figures.json. Informative only: it marks nothing. A new report replaces the old one
    (audited), except while a legal hold covers the attempt (409 naming the hold, audited); the same bytes again change
    nothing. Only for the station's own scheduled attempt (attempt_owner.py)."""
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
        station_attempt(s, station_id, attempt_id, "URL attempt_id")
        row = s.get(CprFigures, attempt_id)
        if row is not None and row.sha256 == sha:
            return {"attempt_id": attempt_id, "sha256": sha, "stored": False}
        details = {"sha256": sha, "replaces": row.sha256 if row is not None else None}
        holds = active_holds(s, attempt_id) if row is not None else []
        if holds:  # a held attempt's evidence is not rewritten: the refusal is audited, the report kept
            audit.append(s, who.actor, CPR_FIGURES_REFUSED, attempt_id, details | {"holds": holds})
            return {"holds": holds}
        if row is None:
            s.add(CprFigures(attempt_id=attempt_id, body=raw.decode("utf-8"), sha256=sha, uploaded_by=who.actor))
        else:
            row.body, row.sha256, row.uploaded_by, row.uploaded_at = raw.decode("utf-8"), sha, who.actor, utcnow()
        audit.append(s, who.actor, audit.CPR_FIGURES, attempt_id, details)
        return {"attempt_id": attempt_id, "sha256": sha, "stored": True}

    out = await db_run(request, store)
    if "holds" in out:
        raise ApiError(409, held_message(attempt_id, out["holds"]), "URL attempt_id", holds=out["holds"])
    return web.json_response(out)


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


STAMPED = ("wall_time", "recording_offset_s", "seq")  # set by the server on its pages; what the page sends is ignored
CHOSEN = ("kind", "item", "done", "rating", "reason", "checklist_hash")  # what the examiner chose


def _offset_now(s: Session, attempt_id: str, now: dt.datetime) -> float | None:
    """Seconds into the attempt's recording now: from the zero of the station's own marks, else from when its
    first recording began (both on the station's clock; a station that keeps time within a second or so)."""
    zero = marks_zero(s, attempt_id)
    if zero is None:
        zero = s.scalar(select(func.min(Recording.media_from)).where(Recording.attempt_id == attempt_id))
    return None if zero is None else max(0.0, round((now - zero).total_seconds(), 3))


async def _examiner_event(request: web.Request, kinds: tuple[str, ...], correction: bool) -> web.Response:
    attempt_id = path_ident(request, "attempt_id")
    who = identity(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(422, "expected a JSON object", "body")
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
    # When and in which order: the server's clock and the examiner's events so far, never the page's word (an
    # examiner could otherwise backdate a mark, or order it before others). Checked first with placeholders.
    body.update(wall_time=utc_now_iso(), recording_offset_s=None, seq=0)
    ev = parse_event(body, "")
    if ev["kind"] not in kinds:
        raise ApiError(422, f"expected kind {' or '.join(kinds)}", "kind")

    def store(s: Session) -> dict[str, Any]:
        _att, station = _attempt_for_examiner(s, who, attempt_id)
        known = s.scalar(select(MarkEvent).where(MarkEvent.event_id == ev["event_id"]))
        if known is not None:  # the page sent it again (a lost answer): the same mark, stamped when first stored
            if known.source != who.actor or known.attempt_id != attempt_id or any(
                    getattr(known, k) != ev[k] for k in CHOSEN):
                raise ApiError(409, f"event_id {ev['event_id']} was already stored with different content", "body")
            return {"accepted": [], "duplicates": [known.event_id]}
        # Marking beside the live picture is ordinary marking; once this examiner has signed the sheet, a
        # change is a correction and needs a reason (the merge rule would not apply it otherwise).
        if correction and not (ev["reason"] or "").strip() and _signed_by(s, attempt_id, who.login):
            raise ApiError(422, "the sheet is signed: a correction needs a reason", "reason")
        now = utcnow()
        last = s.scalar(select(func.max(MarkEvent.seq)).where(MarkEvent.attempt_id == attempt_id,
                                                              MarkEvent.examiner == who.login))
        stamped = {**ev, "wall_time": now.isoformat(timespec="microseconds"), "seq": (last or 0) + 1,
                   "recording_offset_s": _offset_now(s, attempt_id, now)}
        new, dup = store_events(s, [stamped], who.actor, station, where="body")
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
