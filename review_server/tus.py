"""Fragment ingest over tus 1.0 (https://tus.io/protocols/resumable-upload): core, creation, checksum
(sha256), termination.

Routes (station bearer token, permission ``station.upload``):
- ``OPTIONS /api/tus``: Tus-Version, Tus-Extension, Tus-Checksum-Algorithm, Tus-Max-Size.
- ``POST /api/tus``: create. Headers Upload-Length and Upload-Metadata with ``sha256`` (hex), ``recording``,
  ``track``, ``seq``, ``kind`` (init|media) and optionally ``filename``, ``attempt_id``, ``start``, ``end``.
  201 + Location. If the server already holds bytes with this SHA-256, the fragment is recorded at once and
  the new upload is already complete (Upload-Offset = Upload-Length): nothing is sent twice.
- ``HEAD /api/tus/{upload_id}``: Upload-Offset, Upload-Length; once stored, ``X-Stored-SHA256``.
- ``PATCH /api/tus/{upload_id}``: Content-Type application/offset+octet-stream, Upload-Offset, optional
  ``Upload-Checksum: sha256 <base64>`` (a mismatching chunk is answered 460 and nothing is appended).
  The PATCH that completes the upload verifies the whole file's SHA-256 (422 and the upload is discarded if
  it differs), stores it in media storage by hash, records the fragment, and answers with X-Stored-SHA256.
- ``DELETE /api/tus/{upload_id}``: termination.

Partial uploads live in ``<upload_dir>/<id>.part`` (the bytes; offset = its size) beside ``<id>.json``
(length, metadata, owner; written atomically). Both survive a server restart. A chunk is written to the
part file as it arrives and hashed on the way (its own SHA-256 for Upload-Checksum, and a running SHA-256 of
the whole file kept in memory), so that the completing PATCH needs neither a re-read nor a re-hash; a chunk
whose checksum fails is cut off again. Appends are not fsynced one by one: the file is fsynced once, before
it is stored and confirmed, and the station keeps its copy until that confirmation. So a server power loss
can only make a station re-send bytes (the offset it reads with HEAD is then lower), never lose them; and if
unverified bytes survived a crash, the whole-file hash at the end catches them (422, the upload restarts). Ids are
128 random bits in hex and are checked against that pattern before any path is built, so an id can never
name a file outside the folder. An upload is visible only to the station that created it.

Bounded per station: at most `tus_max_open_per_station` uploads not yet stored, declaring at most
`tus_max_open_bytes_per_station` bytes together; a create past either is answered 429 (counted and reserved
before anything is awaited, so parallel creates cannot all pass). An upload idle for `tus_idle_s` (no byte
received) is removed while the server runs (a station that comes back gets 404 on HEAD and creates it again),
and so is a stored upload's receipt after `expire_after_s`. The per-upload lock exists only while a request
holds it, so probing ids leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .auth import Identity
from .fragment_rows import (
    IncomingFragment,
    Where,
    already_recorded,
    check_content,
    init_sha,
    record_fragment,
    utc_or_none,
)
from .roles import requires
from .storage import HashMismatch
from .validate import CODE_RE, SHA256_RE
from .web import CONFIG, STORAGE, ApiError, db_run, identity

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,checksum,termination"
BASE = "/api/tus"
STORED_HEADER = "X-Stored-SHA256"
CHECKSUM_MISMATCH = 460
PIECE = 1024 * 1024  # bytes taken from the socket at a time
READ_TIMEOUT_S = 60.0  # a silent peer releases the upload after this long
_ID_RE = re.compile(r"[0-9a-f]{32}")
_FLOAT_RE = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")

routes = web.RouteTableDef()
TUS_DIR = web.AppKey("tus_dir", Path)
TUS_LOCKS = web.AppKey("tus_locks", dict)
TUS_HASHES = web.AppKey("tus_hashes", dict)  # upload id -> RunningHash of its part file
TUS_OPEN = web.AppKey("tus_open", dict)  # station id -> {upload id: declared length} of uploads not yet stored


# ---------------------------------------------------------------- state on disk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class UploadState:
    """One upload's files: ``<id>.json`` (info) and ``<id>.part`` (bytes received so far)."""

    def __init__(self, folder: Path, upload_id: str) -> None:
        if not _ID_RE.fullmatch(upload_id):
            raise ValueError("bad upload id")
        self.id = upload_id
        self.info_path = folder / f"{upload_id}.json"
        self.part_path = folder / f"{upload_id}.part"

    def load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.info_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def save(self, info: dict[str, Any]) -> None:
        tmp = self.info_path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(info, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.info_path)
        _fsync_dir(self.info_path.parent)

    def offset(self, info: dict[str, Any]) -> int:
        if info.get("stored"):
            return int(info["length"])
        try:
            return self.part_path.stat().st_size
        except FileNotFoundError:
            return 0

    def remove(self) -> None:
        for path in (self.part_path, self.info_path):
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------- helpers


def _headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store", **extra}


def _check_version(request: web.Request) -> None:
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise ApiError(412, f"expected Tus-Resumable: {TUS_VERSION}", "Tus-Resumable", tus_version=TUS_VERSION)


def _state(request: web.Request) -> UploadState:
    upload_id = request.match_info["upload_id"]
    try:
        return UploadState(request.app[TUS_DIR], upload_id)
    except ValueError:
        raise ApiError(404, "no such upload", "URL upload_id") from None


def _load_own(request: web.Request, state: UploadState) -> dict[str, Any]:
    info = state.load()
    if info is None or info.get("station_id") != identity(request).station_id:
        raise ApiError(404, "no such upload", "URL upload_id")
    return info


def parse_metadata(header: str) -> dict[str, str]:
    """Upload-Metadata: comma-separated ``key base64(value)`` pairs (a key may have no value)."""
    out: dict[str, str] = {}
    for part in header.split(","):
        part = part.strip()
        if not part:
            continue
        key, _, b64 = part.partition(" ")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key) or key in out:
            raise ApiError(400, f"bad or repeated metadata key {key[:64]!r}", "Upload-Metadata")
        try:
            out[key] = base64.b64decode(b64.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text given to b64decode
            raise ApiError(400, f"metadata {key!r} is not base64 of UTF-8", "Upload-Metadata") from None
    return out


def _fragment_meta(meta: dict[str, str]) -> dict[str, Any]:
    def need(name: str, pattern: re.Pattern[str]) -> str:
        value = meta.get(name, "")
        if not pattern.fullmatch(value):
            raise ApiError(400, f"metadata {name} missing or not matching {pattern.pattern}", "Upload-Metadata")
        return value

    out: dict[str, Any] = {
        "sha256": need("sha256", SHA256_RE),
        "recording": need("recording", CODE_RE),
        "track": need("track", CODE_RE),
        "seq": int(need("seq", re.compile(r"[0-9]{1,9}"))),
        "kind": need("kind", re.compile(r"init|media")),
        "filename": meta.get("filename", "")[:255],
        "attempt_id": meta.get("attempt_id") or None,
        "start": None,
        "end": None,
    }
    if (out["kind"] == "init") != (out["seq"] == 0):
        raise ApiError(400, "seq 0 is the init file, 1, 2, ... media", "Upload-Metadata")
    if out["attempt_id"] is not None and not CODE_RE.fullmatch(out["attempt_id"]):
        raise ApiError(400, f"attempt_id must match {CODE_RE.pattern}", "Upload-Metadata")
    for name in ("start", "end"):
        if meta.get(name):
            out[name] = float(need(name, _FLOAT_RE))
    media_from = meta.get("media_from") or None
    utc_or_none(media_from, "Upload-Metadata media_from")  # kept as text: the upload's state is JSON
    out["media_from"] = media_from
    return out


# ---------------------------------------------------------------- database


TUS_WHERE = Where(attempt="Upload-Metadata attempt_id", recording="Upload-Metadata", seq="Upload-Metadata")


def _incoming(frag: dict[str, Any], size: int) -> IncomingFragment:
    return IncomingFragment(recording=frag["recording"], track=frag["track"], seq=frag["seq"], kind=frag["kind"],
                            sha256=frag["sha256"], size=size, attempt_id=frag["attempt_id"],
                            start_s=frag["start"], end_s=frag["end"],
                            media_from=utc_or_none(frag.get("media_from"), "Upload-Metadata media_from"))


def _existing(s: Session, who: Identity, frag: dict[str, Any], size: int) -> bool:
    assert who.station_id is not None
    return already_recorded(s, who.station_id, _incoming(frag, size), TUS_WHERE)


async def _record_fragment(request: web.Request, frag: dict[str, Any], size: int) -> None:
    who = identity(request)
    station_id = who.station_id
    assert station_id is not None  # station.upload: station tokens only
    try:
        await db_run(request, lambda s: record_fragment(s, station_id, _incoming(frag, size), TUS_WHERE))
    except IntegrityError:  # a concurrent upload of the same fragment: fine if it holds the same hash
        if not await db_run(request, lambda s: _existing(s, who, frag, size)):
            raise ApiError(409, "conflicting concurrent upload", "Upload-Metadata") from None


async def _finish(request: web.Request, state: UploadState, info: dict[str, Any]) -> None:
    """All bytes are here: fsync, verify the SHA-256, store, record the fragment, mark the upload stored."""
    frag = info["fragment"]
    known = _whole_file_hash(request, state, info["length"])
    incoming = _incoming(frag, info["length"])
    init = await db_run(request, lambda s: init_sha(s, incoming))

    def put() -> None:
        with open(state.part_path, "rb") as fh:
            os.fsync(fh.fileno())
            check_content(request.app[STORAGE], fh, info["length"], incoming, init, "body")
        if known is not None and known != frag["sha256"]:
            raise HashMismatch(frag["sha256"], known, info["length"])
        # With the running hash there is nothing to re-read; without it (after a restart) the store hashes.
        request.app[STORAGE].put(state.part_path, frag["sha256"], verified=known is not None)

    try:
        await asyncio.to_thread(put)
    except HashMismatch as exc:
        await asyncio.to_thread(state.remove)
        _release(request.app, state.id)
        raise ApiError(422, f"upload discarded: {exc}", "Upload-Metadata sha256") from None
    except ApiError:  # not an fMP4 fragment: discarded, and the station learns why
        await asyncio.to_thread(state.remove)
        _release(request.app, state.id)
        raise
    await _record_fragment(request, frag, info["length"])
    info["stored"] = True
    await asyncio.to_thread(state.save, info)
    await asyncio.to_thread(state.part_path.unlink, missing_ok=True)
    _release(request.app, state.id)


# ---------------------------------------------------------------- handlers


@routes.route("OPTIONS", BASE)
@requires("station.upload")
async def tus_options(request: web.Request) -> web.Response:
    return web.Response(
        status=204,
        headers=_headers(
            **{
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": TUS_EXTENSIONS,
                "Tus-Checksum-Algorithm": "sha256",
                "Tus-Max-Size": str(request.app[CONFIG].max_fragment_bytes),
            }
        ),
    )


@routes.route("POST", BASE)
@requires("station.upload")
async def tus_create(request: web.Request) -> web.Response:
    _check_version(request)
    if request.headers.get("Upload-Defer-Length"):
        raise ApiError(400, "Upload-Defer-Length is not supported; send Upload-Length", "Upload-Defer-Length")
    raw_length = request.headers.get("Upload-Length", "")
    if not re.fullmatch(r"[0-9]{1,15}", raw_length):
        raise ApiError(400, "Upload-Length (a non-negative integer) is required", "Upload-Length")
    length = int(raw_length)
    limit = request.app[CONFIG].max_fragment_bytes
    if length > limit:
        raise ApiError(413, f"Upload-Length {length} is over the limit of {limit}", "Upload-Length")
    if length == 0:
        raise ApiError(400, "empty fragment", "Upload-Length")
    if request.content_length:
        raise ApiError(400, "creation-with-upload is not supported; send the bytes with PATCH", "body")
    frag = _fragment_meta(parse_metadata(request.headers.get("Upload-Metadata", "")))
    who = identity(request)
    state = UploadState(request.app[TUS_DIR], secrets.token_hex(16))
    _reserve(request, who.station_id, state.id, length)  # before any await: parallel creates see each other
    try:
        return await _create(request, who, frag, length, state)
    except BaseException:
        _release(request.app, state.id)
        raise


async def _create(request: web.Request, who: Identity, frag: dict[str, Any], length: int,
                  state: UploadState) -> web.Response:
    already = await db_run(request, lambda s: _existing(s, who, frag, length))
    storage = request.app[STORAGE]
    have_bytes = await asyncio.to_thread(storage.exists, frag["sha256"])
    if have_bytes and not already:
        if await asyncio.to_thread(storage.size, frag["sha256"]) != length:
            raise ApiError(409, "a stored object with this SHA-256 has another length", "Upload-Length")
        # The same bytes may be held for another place: they must still be what this place says they are.
        incoming = _incoming(frag, length)
        init = await db_run(request, lambda s: init_sha(s, incoming))

        def check_stored() -> None:
            with storage.open(frag["sha256"]) as fh:
                check_content(storage, fh, length, incoming, init, "Upload-Metadata kind")

        await asyncio.to_thread(check_stored)
        await _record_fragment(request, frag, length)
    info = {"length": length, "fragment": frag, "station_id": who.station_id, "created": time.time()}
    info["stored"] = have_bytes  # "already have it": the upload is complete from the start
    await asyncio.to_thread(state.save, info)
    if have_bytes:
        _release(request.app, state.id)
    headers = _headers(Location=f"{BASE}/{state.id}", **{"Upload-Offset": str(state.offset(info))})
    if info["stored"]:
        headers[STORED_HEADER] = frag["sha256"]
    return web.Response(status=201, headers=headers)


@routes.route("HEAD", BASE + "/{upload_id}")
@requires("station.upload")
async def tus_head(request: web.Request) -> web.Response:
    _check_version(request)
    state = _state(request)
    async with _lock(request, state):
        info = _load_own(request, state)
        offset = state.offset(info)  # a stat: no thread needed
        if not info.get("stored") and offset == info["length"]:
            await _finish(request, state, info)  # the server stopped between the last byte and the store
        headers = _headers(**{"Upload-Offset": str(state.offset(info)), "Upload-Length": str(info["length"])})
        if info.get("stored"):
            headers[STORED_HEADER] = info["fragment"]["sha256"]
    return web.Response(status=200, headers=headers)


def _streaming(handler: Any) -> Any:
    handler.osce_streaming_body = True  # the body-size middleware applies the fragment limit
    return handler


@routes.route("PATCH", BASE + "/{upload_id}")
@requires("station.upload")
@_streaming
async def tus_patch(request: web.Request) -> web.Response:
    _check_version(request)
    if request.content_type != "application/offset+octet-stream":
        raise ApiError(415, "expected Content-Type application/offset+octet-stream", "Content-Type")
    raw_offset = request.headers.get("Upload-Offset", "")
    if not re.fullmatch(r"[0-9]{1,15}", raw_offset):
        raise ApiError(400, "Upload-Offset (a non-negative integer) is required", "Upload-Offset")
    checksum = _parse_checksum(request.headers.get("Upload-Checksum"))
    state = _state(request)
    async with _lock(request, state):
        info = _load_own(request, state)
        offset = state.offset(info)  # a stat: no thread needed
        if int(raw_offset) != offset:
            raise ApiError(409, f"Upload-Offset is {raw_offset}, the upload is at {offset}", "Upload-Offset")
        room = info["length"] - offset
        if room == 0 and info.get("stored"):  # complete already: nothing to take
            done = {"Upload-Offset": str(offset), STORED_HEADER: info["fragment"]["sha256"]}
            return web.Response(status=204, headers=_headers(**done))
        if request.content_length is not None and request.content_length > room:
            raise ApiError(400, f"{request.content_length} bytes would pass Upload-Length", "Content-Length")
        if not await _receive(request, state, offset, room, checksum):
            return web.json_response(
                {"error": "Upload-Checksum does not match the body; nothing appended", "where": "Upload-Checksum"},
                status=CHECKSUM_MISMATCH,
                reason="Checksum Mismatch",
                headers=_headers(**{"Upload-Offset": str(offset)}),
            )
        offset = state.offset(info)  # a stat: no thread needed
        headers = _headers(**{"Upload-Offset": str(offset)})
        if offset == info["length"] and not info.get("stored"):
            await _finish(request, state, info)
        if info.get("stored"):
            headers[STORED_HEADER] = info["fragment"]["sha256"]
    return web.Response(status=204, headers=headers)


@routes.route("DELETE", BASE + "/{upload_id}")
@requires("station.upload")
async def tus_delete(request: web.Request) -> web.Response:
    _check_version(request)
    state = _state(request)
    async with _lock(request, state):
        _load_own(request, state)
        await asyncio.to_thread(state.remove)
    _release(request.app, state.id)
    return web.Response(status=204, headers=_headers())


def _parse_checksum(header: str | None) -> bytes | None:
    if header is None:
        return None
    algo, _, b64 = header.strip().partition(" ")
    if algo != "sha256":
        raise ApiError(400, "unsupported checksum algorithm; use sha256", "Upload-Checksum")
    try:
        digest = base64.b64decode(b64.strip(), validate=True)
    except binascii.Error:
        digest = b""
    if len(digest) != 32:
        raise ApiError(400, "expected 'sha256 <base64 of 32 bytes>'", "Upload-Checksum")
    return digest


@contextlib.asynccontextmanager
async def _lock(request: web.Request, state: UploadState):
    """One request at a time per upload; a second one is refused (409) rather than queued. The table holds an
    upload's entry only while a request has it (nobody ever waits), so it never grows with the ids asked for."""
    locks: dict[str, bool] = request.app[TUS_LOCKS]
    if locks.get(state.id):
        raise ApiError(409, "another request is using this upload; retry", "URL upload_id")
    locks[state.id] = True
    try:
        yield
    finally:
        locks.pop(state.id, None)


def _reserve(request: web.Request, station_id: int | None, upload_id: str, length: int) -> None:
    """Count a new upload against its station's limits, or refuse it (429). Synchronous: nothing is awaited
    between the check and the count."""
    cfg = request.app[CONFIG]
    mine: dict[str, int] = request.app[TUS_OPEN].setdefault(station_id, {})
    if len(mine) >= cfg.tus_max_open_per_station:
        raise ApiError(429, f"{len(mine)} uploads of this station are open; finish or delete one first "
                            f"(limit {cfg.tus_max_open_per_station})", "POST /api/tus")
    if sum(mine.values()) + length > cfg.tus_max_open_bytes_per_station:
        raise ApiError(429, f"this station's open uploads would declare more than "
                            f"{cfg.tus_max_open_bytes_per_station} bytes", "Upload-Length")
    mine[upload_id] = length


def _release(app: web.Application, upload_id: str) -> None:
    """The upload is stored, deleted or expired: it counts no more, and its running hash goes."""
    for mine in app[TUS_OPEN].values():
        mine.pop(upload_id, None)
    app[TUS_HASHES].pop(upload_id, None)


async def _read_piece(request: web.Request, n: int) -> bytes:
    try:
        return await asyncio.wait_for(request.content.read(n), READ_TIMEOUT_S)
    except (TimeoutError, ConnectionError, asyncio.IncompleteReadError) as exc:
        raise ApiError(400, f"body cut short ({type(exc).__name__})", "body") from None


@dataclass
class RunningHash:
    """The SHA-256 of a part file's first `covered` bytes, carried from PATCH to PATCH in memory (lost on a
    restart, when the completing PATCH hashes the file once instead)."""

    covered: int
    sha: Any  # hashlib's sha256 object


def _write_piece(fh: BinaryIO, piece: bytes, *hashes: Any) -> None:
    for h in hashes:
        h.update(piece)
    start = fh.tell()
    view = memoryview(piece)
    while view:
        view = view[fh.write(view) or 0 :]
    # Start writing this piece to disk now (Linux starts write-back for dirty pages on DONTNEED), so that
    # the fsync before the store does not wait for the whole file; the page cache has no use for it.
    os.posix_fadvise(fh.fileno(), start, len(piece), os.POSIX_FADV_DONTNEED)


async def _receive(request: web.Request, state: UploadState, offset: int, room: int, checksum: bytes | None) -> bool:
    """Append the body to the part file as it arrives, hashing it on the way; the next piece is read from the
    socket while the last one is written. With a checksum, a body that does not match it (or is cut short)
    is cut off again and False returned; without one, whatever arrived before a cut is kept."""
    hashes: dict[str, RunningHash] = request.app[TUS_HASHES]
    running = hashes.pop(state.id, None)
    whole = running.sha.copy() if running is not None and running.covered == offset else None
    if offset == 0:
        whole = hashlib.sha256()
    chunk = hashlib.sha256() if checksum is not None else None
    updates = [h for h in (whole, chunk) if h is not None]
    received, ok = 0, True
    fh = await asyncio.to_thread(open, state.part_path, "ab", buffering=0)
    writing: asyncio.Future[None] | None = None
    try:
        while received < room:
            try:
                piece = await _read_piece(request, min(PIECE, room - received))
            except ApiError:
                ok = checksum is None  # keep an unchecked partial body: the client resumes from HEAD
                break
            if not piece:
                break
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(asyncio.to_thread(_write_piece, fh, piece, *updates))
            received += len(piece)
        if writing is not None:
            await writing
        if chunk is not None and chunk.digest() != checksum:
            ok = False
    except BaseException:  # a full disk, a cancelled request: no unchecked bytes stay behind a checksum
        if writing is not None and not writing.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(writing)
        if checksum is not None:
            with contextlib.suppress(OSError):
                fh.truncate(offset)
        raise
    finally:
        await asyncio.to_thread(fh.close)
    if not ok:
        await asyncio.to_thread(os.truncate, state.part_path, offset)  # nothing of a failed chunk stays
        if running is not None:
            hashes[state.id] = running
    elif whole is not None:
        hashes[state.id] = RunningHash(offset + received, whole)
    return ok


def _whole_file_hash(request: web.Request, state: UploadState, length: int) -> str | None:
    """The running hash if it covers the whole file; None if it must be computed from the file."""
    running = request.app[TUS_HASHES].pop(state.id, None)
    return running.sha.hexdigest() if running is not None and running.covered == length else None


# ---------------------------------------------------------------- wiring


def _last_active(state: UploadState, info: dict[str, Any], now: float) -> float:
    """When the upload last received a byte (its part file's time), or was created."""
    try:
        return max(float(info.get("created", now)), state.part_path.stat().st_mtime)
    except FileNotFoundError:
        return float(info.get("created", now))


def expire_uploads(folder: Path, max_age_s: float, now: float | None = None, idle_s: float | None = None,
                   keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Remove uploads created more than max_age_s ago (abandoned ones, and receipts of stored ones) and, with
    idle_s, uploads not stored that have received nothing for idle_s; `keep`: ids a request holds now. Returns
    the removed ids. A station that still holds such an upload's URL gets 404 on HEAD and creates a new one."""
    now = time.time() if now is None else now
    removed = []
    for stale in folder.glob("*.json.tmp"):
        if now - stale.stat().st_mtime > 60:  # a save in progress takes far less
            stale.unlink(missing_ok=True)
    for info_path in folder.glob("*.json"):
        try:
            state = UploadState(folder, info_path.stem)
            info = state.load() or {}
        except (ValueError, OSError, json.JSONDecodeError):
            continue  # not ours: leave it alone
        if state.id in keep:
            continue
        old = now - float(info.get("created", now)) > max_age_s
        idle = idle_s is not None and not info.get("stored") and now - _last_active(state, info, now) > idle_s
        if old or idle:
            state.remove()
            removed.append(state.id)
    for part in folder.glob("*.part"):  # bytes whose info file is gone
        if not part.with_suffix(".json").exists() and now - part.stat().st_mtime > 60:
            part.unlink(missing_ok=True)
    return removed


def _open_uploads(folder: Path) -> dict[Any, dict[str, int]]:
    """Uploads not yet stored, per station, as found on disk (after a restart)."""
    out: dict[Any, dict[str, int]] = {}
    for info_path in folder.glob("*.json"):
        with contextlib.suppress(ValueError, OSError, json.JSONDecodeError):
            info = UploadState(folder, info_path.stem).load() or {}
            if not info.get("stored"):
                out.setdefault(info.get("station_id"), {})[info_path.stem] = int(info["length"])
    return out


async def _expire_loop(app: web.Application, expire_after_s: float) -> None:
    """While the server runs: idle uploads and old receipts go (review_server/config.py tus_idle_s)."""
    idle_s = float(app[CONFIG].tus_idle_s)
    while True:
        await asyncio.sleep(max(0.5, min(60.0, idle_s / 4)))
        try:
            gone = await asyncio.to_thread(expire_uploads, app[TUS_DIR], expire_after_s, None, idle_s,
                                           frozenset(app[TUS_LOCKS].keys()))
        except OSError:
            continue
        for upload_id in gone:
            _release(app, upload_id)


def configure(app: web.Application, upload_dir: Path | None = None, expire_after_s: float = 14 * 86400) -> None:
    """The receiver's state on an application built by create_app (before it starts): its folder (uploads older
    than expire_after_s, or idle for tus_idle_s, are removed now and while the server runs), the upload locks,
    the running hashes and the open uploads per station."""
    folder = Path(upload_dir) if upload_dir is not None else Path(app[CONFIG].media_dir) / ".tus"
    folder.mkdir(parents=True, exist_ok=True)
    expire_uploads(folder, expire_after_s, idle_s=app[CONFIG].tus_idle_s)
    first = TUS_DIR not in app
    app[TUS_DIR] = folder
    app[TUS_LOCKS] = {}
    app[TUS_HASHES] = {}
    app[TUS_OPEN] = _open_uploads(folder)
    if first:
        async def expiring(app: web.Application):
            task = asyncio.create_task(_expire_loop(app, expire_after_s))
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.cleanup_ctx.append(expiring)
