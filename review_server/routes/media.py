"""Recordings and fragments: a minimal upload for stations (one PUT per fragment, verified by SHA-256
and size; the tus protocol comes later), download by hash, the audited recording view, and deletion
for retention."""

from __future__ import annotations

import asyncio
import hashlib
import re
import tempfile

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import audit, retention
from ..fragment_rows import (
    IncomingFragment,
    Where,
    already_recorded,
    check_content,
    init_sha,
    record_fragment,
    utc_or_none,
)
from ..models import Attempt, Candidate, Fragment, Recording, Station
from ..retention import Deletion
from ..roles import requires
from ..storage import NotFound
from ..validate import CODE_RE, SHA256_RE, Fields, path_ident, path_int
from ..web import STORAGE, ApiError, body_deadline, db_run, identity, read_json
from .scope import examiner_may, require_assigned

routes = web.RouteTableDef()

SHA_HEADER = "X-Content-SHA256"
CHUNK = 256 * 1024
_FLOAT_RE = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")


def _query_float(request: web.Request, name: str) -> float | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not _FLOAT_RE.fullmatch(value):
        raise ApiError(400, "expected a non-negative number of seconds", f"query {name}")
    return float(value)


def _streaming(handler):
    handler.osce_streaming_body = True  # the body-size middleware uses the fragment limit here
    return handler


PUT_WHERE = Where(attempt="query attempt_id", recording="URL key", seq="URL seq")


@routes.put("/api/recordings/{key}/tracks/{track}/fragments/{seq}")
@requires("station.upload")
@_streaming
async def put_fragment(request: web.Request) -> web.Response:
    """One fragment of a recording's track, as listed in the station's manifest (media/manifest.py):
    seq 0 is the track's init file, 1, 2, ... its media fragments. Body: the bytes. Headers:
    Content-Length, X-Content-SHA256 (hex). Query (optional): attempt_id, start, end (seconds of the
    recording's clock), media_from (with the init file: when media time 0 was, ISO-8601 UTC). 201 when
    stored, 200 when the same bytes were already there, 4xx (nothing stored) when the hash, the length or
    anything else is wrong."""
    key, track, seq = path_ident(request, "key"), path_ident(request, "track"), path_int(request, "seq")
    kind = "init" if seq == 0 else "media"
    expected = request.headers.get(SHA_HEADER, "").strip().lower()
    if not SHA256_RE.fullmatch(expected):
        raise ApiError(400, "expected the fragment's SHA-256 as 64 hex digits", SHA_HEADER)
    length = request.content_length
    if length is None:
        raise ApiError(411, "Content-Length is required", "Content-Length")
    if length == 0:
        raise ApiError(400, "empty fragment", "body")
    attempt_id = request.query.get("attempt_id")
    if attempt_id is not None and not CODE_RE.fullmatch(attempt_id):
        raise ApiError(400, f"not a valid attempt_id (must match {CODE_RE.pattern})", "query attempt_id")
    start_s, end_s = _query_float(request, "start"), _query_float(request, "end")
    if start_s is not None and end_s is not None and end_s < start_s:
        raise ApiError(400, "end is before start", "query end")
    media_from = utc_or_none(request.query.get("media_from"), "query media_from")
    who = identity(request)

    frag = IncomingFragment(recording=key, track=track, seq=seq, kind=kind, sha256=expected, size=length,
                            attempt_id=attempt_id, start_s=start_s, end_s=end_s, media_from=media_from)

    def precheck(s: Session) -> bool:
        """An idempotent retry (True), or a 409 before any byte is stored if it conflicts."""
        assert who.station_id is not None
        return already_recorded(s, who.station_id, frag, PUT_WHERE)

    def _reply(stored: bool) -> dict[str, object]:
        return {"recording": key, "track": track, "seq": seq, "sha256": expected, "size": length, "stored": stored}

    if await db_run(request, precheck):
        return web.json_response(_reply(False))

    storage = request.app[STORAGE]
    with tempfile.TemporaryFile(prefix="osce-upload-") as spool:
        h, received = hashlib.sha256(), 0
        try:
            while True:
                async with body_deadline(request):  # per chunk: a 256 MiB fragment may take long, but never stall
                    chunk = await request.content.read(CHUNK)
                if not chunk:
                    break
                received += len(chunk)
                if received > length:
                    raise ApiError(400, f"body is longer than Content-Length {length}", "body")
                h.update(chunk)
                await asyncio.to_thread(spool.write, chunk)
        except ApiError:
            raise
        except Exception as exc:  # the client went away or the payload was cut: nothing is stored
            raise ApiError(
                400, f"upload ended early after {received} of {length} bytes ({type(exc).__name__})", "body"
            ) from None
        if received != length:
            raise ApiError(400, f"upload ended early after {received} of {length} bytes", "body")
        actual = h.hexdigest()
        if actual != expected:
            raise ApiError(422, f"content SHA-256 is {actual}, not the one declared", SHA_HEADER)
        spool.seek(0)
        init = await db_run(request, lambda s: init_sha(s, frag))
        await asyncio.to_thread(check_content, storage, spool, length, frag, init, "body")
        await asyncio.to_thread(storage.put, spool, expected)

    def record(s: Session) -> bool:
        assert who.station_id is not None
        return record_fragment(s, who.station_id, frag, PUT_WHERE)

    try:
        if not await db_run(request, record):
            return web.json_response(_reply(False))  # a parallel retry recorded it meanwhile
    except IntegrityError:
        # A concurrent upload of the same fragment won the race; the bytes are content-addressed anyway.
        if await db_run(request, precheck):
            return web.json_response(_reply(False))
        raise ApiError(409, "conflicting concurrent upload", "URL seq") from None
    return web.json_response(_reply(True), status=201)


def _no_recording(key: str) -> ApiError:
    return ApiError(404, f"no recording {key!r}", "URL key")


def _recording_scope(s: Session, rec: Recording, who) -> None:
    att = s.get(Attempt, rec.attempt_id) if rec.attempt_id else None
    require_assigned(s, who, rec.station_id, att.exam_day_id if att else None, _no_recording(rec.key))


@routes.get("/api/recordings/{key}", allow_head=False)
@requires("recordings.view")
async def view_recording(request: web.Request) -> web.Response:
    """A recording's fragments (hash, size, time range); each view is written to the audit log."""
    key = path_ident(request, "key")
    who = identity(request)

    def view(s: Session) -> dict:
        rec = s.scalar(select(Recording).where(Recording.key == key))
        if rec is None:
            raise _no_recording(key)
        _recording_scope(s, rec, who)
        station = s.get(Station, rec.station_id)
        att = s.get(Attempt, rec.attempt_id) if rec.attempt_id else None
        cand = s.get(Candidate, att.candidate_id) if att and att.candidate_id else None
        audit.append(s, who.actor, audit.RECORDING_VIEW, key)
        return {
            "recording": rec.key,
            "station": station.code if station else None,
            "attempt_id": rec.attempt_id,
            "accreditation_number": cand.accreditation_number if cand else None,
            "fragments": [
                {
                    "track": f.track,
                    "kind": f.kind,
                    "seq": f.seq,
                    "sha256": f.sha256,
                    "size": f.size,
                    "start_s": f.start_s,
                    "end_s": f.end_s,
                    "url": f"/api/media/{f.sha256}",
                }
                for f in rec.fragments
            ],
        }

    return web.json_response(await db_run(request, view))


@routes.get("/api/media/{sha256}", allow_head=False)
@requires("recordings.view")
async def get_media(request: web.Request) -> web.StreamResponse:
    """The bytes of one fragment by its SHA-256 (audited)."""
    sha = path_ident(request, "sha256", SHA256_RE)
    who = identity(request)

    def check(s: Session) -> None:
        recs = s.scalars(select(Recording).join(Fragment).where(Fragment.sha256 == sha)).all()
        # Outside the examiner's assignments reads as missing: a 403 would confirm the hash is stored (scope.py).
        if not recs or not any(_may_view(s, r, who) for r in recs):
            raise ApiError(404, "no fragment with this SHA-256", "URL sha256")
        audit.append(s, who.actor, audit.MEDIA_DOWNLOAD, sha, {"recordings": sorted(r.key for r in recs)})

    await db_run(request, check)
    storage = request.app[STORAGE]
    try:
        size = await asyncio.to_thread(storage.size, sha)
        fh = await asyncio.to_thread(storage.open, sha)
    except NotFound:
        raise ApiError(404, "fragment is listed but its media is missing from storage", "URL sha256") from None
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream", "ETag": f'"{sha}"'})
    resp.content_length = size
    await resp.prepare(request)
    try:
        while chunk := await asyncio.to_thread(fh.read, CHUNK):
            await resp.write(chunk)
    finally:
        fh.close()
    await resp.write_eof()
    return resp


def _may_view(s: Session, rec: Recording, who) -> bool:
    att = s.get(Attempt, rec.attempt_id) if rec.attempt_id else None
    return examiner_may(s, who, rec.station_id, att.exam_day_id if att else None)


@routes.delete("/api/recordings/{key}")
@requires("recordings.delete")
async def delete_recording(request: web.Request) -> web.Response:
    """Retention: delete a recording and its media. Body {"reason": "..."}; audited with every hash. While a
    legal hold covers its attempt: 409 naming the hold, the refusal audited, nothing deleted."""
    key = path_ident(request, "key")
    reason = Fields(await read_json(request), allowed={"reason"}).text("reason", max_len=2000)
    if not reason.strip():
        raise ApiError(422, "a reason is required for the destruction record", "reason")
    who = identity(request)
    storage = request.app[STORAGE]

    def delete(s: Session) -> tuple[Deletion, str | None]:
        rec = s.scalar(select(Recording).where(Recording.key == key))
        if rec is None:
            raise ApiError(404, f"no recording {key!r}", "URL key")
        return retention.delete_recording(s, rec, who.actor, reason, {}), rec.attempt_id

    done, attempt_id = await db_run(request, delete)
    if done.holds:
        raise ApiError(409, retention.held_message(attempt_id or "", done.holds), "URL key", holds=done.holds)
    for h in done.orphans:  # after the commit: a failed delete leaves an unreferenced blob, never a dangling row
        await asyncio.to_thread(storage.delete, h)
    return web.json_response({"recording": key, "deleted_media": done.orphans})
