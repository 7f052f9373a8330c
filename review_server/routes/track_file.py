"""One stored track served as one MP4 file with byte ranges, for a plain <video src> (attempt page, review link).

The file is the track's init file, then an index, then its media fragments, each sent untouched from storage
(the stored recording is never rewritten; this is a view of it). The index is one `sidx` box per stream of the
init file, built from the fragments' sizes and their start/end times on the recording's clock: without it,
Chromium's demuxer (FFmpeg's mov reader) walks every fragment header of a fragmented MP4 before it can play,
one range request per fragment (measured: 93 requests and 6–8 s for 2 min of 720p at 8 Mbit/s; with the index,
6 requests and 1.6 s). Without complete times, or with an init file it cannot read, the file is served without
an index, which still plays.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import re
import struct
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from media import mp4box

from .. import audit, renditions
from ..models import Fragment, Recording
from ..storage import MediaStorage, NotFound
from ..web import STORAGE, ApiError, db_run

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Piece:
    """One stored object of a track (`sha256`), or bytes made here (`data`, the index)."""

    size: int
    sha256: str = ""
    data: bytes = b""
    start: float | None = None
    end: float | None = None
    kind: str = "media"


class Unsatisfiable(Exception):
    """The Range asked for lies outside the file."""


def track_pieces(s: Session, rec: Recording, track: str) -> list[Piece]:
    frags = s.scalars(
        select(Fragment).where(Fragment.recording_id == rec.id, Fragment.track == track).order_by(Fragment.seq)
    ).all()
    if not frags:
        raise ApiError(404, "no such track", "URL track")
    return [Piece(f.size, f.sha256, start=f.start_s, end=f.end_s, kind=f.kind) for f in frags]


_DIGITS = re.compile(r"[0-9]+")  # RFC 9110 DIGIT is ASCII only: no sign, "_", spaces or other scripts' digits


def _spec(text: str) -> tuple[int | None, int | None]:
    """One range-spec of RFC 9110 (14.1.1): "first-last", "first-" or "-suffix", as (first, last) or
    (None, suffix); Unsatisfiable if it is not that grammar."""
    first_s, dash, last_s = text.partition("-")
    if not dash or (first_s and not _DIGITS.fullmatch(first_s)) or (last_s and not _DIGITS.fullmatch(last_s)):
        raise Unsatisfiable
    if not first_s:
        if not last_s:
            raise Unsatisfiable
        return None, int(last_s)
    return int(first_s), int(last_s) if last_s else None


def rendition_pieces(s: Session, rec: Recording, track: str) -> list[Piece]:
    """The pieces of a track's H.264 rendition (review_server/renditions.py), served as the original's are."""
    pieces = renditions.pieces_of(s, rec.id, track)
    if not pieces:
        raise ApiError(404, "no rendition of this track (yet)", "query rendition")
    return [Piece(int(str(p["size"])), str(p["sha256"]), start=_float(p.get("start")), end=_float(p.get("end")),
                  kind=str(p["kind"])) for p in pieces]


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))


def byte_range(header: str | None, total: int) -> tuple[int, int] | None:
    """The one range asked for as (first, last) inclusive, or None for the whole file (no header, or several
    ranges, which a server may ignore); Unsatisfiable when it is not RFC 9110's grammar, or lies outside the
    file. The decisions (what is sent, whether it is a new viewing) are made on these numbers, never on the
    header's text."""
    if header is None:
        return None
    unit, eq, rest = header.partition("=")
    if unit.lower() != "bytes":  # RFC 9110: a unit not understood is ignored (the whole file, a new viewing)
        return None
    if not eq:
        raise Unsatisfiable
    parts = rest.split(",")
    if len(parts) > 1:  # several ranges: each must be one (a list may have spaces around its commas); sent whole
        for part in parts:
            _spec(part.strip(" \t"))
        return None
    first, last = _spec(rest)
    if first is None:  # the last `last` bytes
        if last == 0:
            raise Unsatisfiable
        return max(0, total - last), total - 1  # type: ignore[operator]
    if first >= total or (last is not None and last < first):
        raise Unsatisfiable
    return first, total - 1 if last is None else min(last, total - 1)


@dataclass(frozen=True)
class Viewing:
    """The audit row a viewing of a track writes: `action` on `target` by `actor`, with `details`."""

    actor: str
    action: str
    target: str
    details: dict[str, Any]


VIEWING_GAP_S = 30 * 60  # requests for one track by one person less than this apart are one viewing
RECENT_MAX = 10_000  # (person, recording, track) remembered per server; the oldest are forgotten first
# Per application (so per server), when each person last asked for each track.
_last_request: weakref.WeakKeyDictionary[web.Application, OrderedDict[tuple[str, str, str], float]] = (
    weakref.WeakKeyDictionary())


def new_viewing(app: web.Application, viewing: Viewing, first: int) -> bool:
    """Is this request a new viewing (audited)? Yes when it starts at byte 0, and also when this person has not
    asked for this track in the last VIEWING_GAP_S: a download that skips the first byte is a viewing too."""
    recent = _last_request.setdefault(app, OrderedDict())
    key = (viewing.actor, viewing.target, str(viewing.details.get("track", "")))
    now = time.monotonic()
    last = recent.pop(key, None)
    recent[key] = now
    while len(recent) > RECENT_MAX:
        recent.popitem(last=False)
    return first == 0 or last is None or now - last > VIEWING_GAP_S


# -- the index -----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def init_streams(init: bytes) -> tuple[tuple[int, int], ...]:
    """(track_ID, timescale) of each stream an init file (ftyp + moov) declares."""
    top = mp4box.walk(init)
    if [b.kind for b in top] != ["ftyp", "moov"]:
        raise ValueError("not an init file of ftyp and moov")
    streams = tuple((t.track_id, t.timescale) for t in mp4box.tracks(init, top[1]))
    if not streams:
        raise ValueError("no tracks")
    if any(timescale == 0 for _, timescale in streams):
        raise ValueError("timescale 0")
    return streams


def sidx_boxes(streams: tuple[tuple[int, int], ...], media: list[Piece]) -> bytes:
    """One sidx per stream, each listing every media fragment as one subsegment starting with a key frame.
    A fragment lasts until the next one starts (a hole is folded into the fragment before it)."""
    assert media and all(p.start is not None and p.end is not None for p in media)
    count = len(media)
    if count > 0xFFFF or any(p.size >= 1 << 31 for p in media):
        raise ValueError("too many or too large fragments for one sidx")
    box_size = 40 + 12 * count
    out = b""
    for n, (track_id, timescale) in enumerate(streams):
        ticks = [round(p.start * timescale) for p in media] + [round(media[-1].end * timescale)]  # type: ignore[operator]
        body = struct.pack(">B3xIIQQHH", 1, track_id, timescale, max(0, ticks[0]),
                           box_size * (len(streams) - 1 - n), 0, count)  # first_offset: skip the later sidx boxes
        for i, p in enumerate(media):
            body += struct.pack(">III", p.size, max(0, ticks[i + 1] - ticks[i]), 0x90000000)  # SAP type 1
        out += struct.pack(">I4s", 8 + len(body), b"sidx") + body
    return out


async def with_index(storage: MediaStorage, pieces: list[Piece]) -> list[Piece]:
    """The pieces with an index after the init file, when the track allows one; else as they are."""
    init, media = pieces[0], pieces[1:]
    if init.kind != "init" or not media or any(p.kind != "media" or p.start is None or p.end is None for p in media):
        return pieces
    try:
        data = await asyncio.to_thread(storage.get, init.sha256)
        index = sidx_boxes(init_streams(data), media)
    except (NotFound, ValueError, KeyError, struct.error):
        return pieces
    return [init, Piece(len(index), data=index, kind="index"), *media]


# -- sending -------------------------------------------------------------------------------------------------


def etag_of(pieces: list[Piece]) -> str:
    text = "".join(p.sha256 or hashlib.sha256(p.data).hexdigest() for p in pieces)
    return '"' + hashlib.sha256(text.encode("ascii")).hexdigest()[:32] + '"'


def unsatisfiable(total: int) -> web.Response:
    return web.json_response({"error": "requested range not satisfiable", "where": "Range"}, status=416,
                             headers={"Content-Range": f"bytes */{total}"})


async def send_track(request: web.Request, pieces: list[Piece], viewing: Viewing | None = None) -> web.StreamResponse:
    """The track as video/mp4: 200 whole, 206 for one range, 416 for a range outside it or not in the Range
    grammar. With `viewing`, a new viewing (new_viewing) is audited, with the span sent, before any byte goes."""
    pieces = await with_index(request.app[STORAGE], pieces)
    total = sum(p.size for p in pieces)
    try:
        span = byte_range(request.headers.get("Range"), total)
    except Unsatisfiable:
        return unsatisfiable(total)
    first, last = span if span is not None else (0, total - 1)
    if viewing is not None and new_viewing(request.app, viewing, first):
        details = viewing.details | {"bytes": [first, last], "of": total}
        await db_run(request, lambda s: audit.append(s, viewing.actor, viewing.action, viewing.target, details))
    headers = {"Content-Type": "video/mp4", "Cache-Control": "private, no-store", "Accept-Ranges": "bytes",
               "ETag": etag_of(pieces)}
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{total}"
    resp = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    resp.content_length = last - first + 1 if total else 0
    # The player going away mid-answer is normal (Chromium drops a range request once it has enough or seeks).
    with contextlib.suppress(ConnectionError):
        await resp.prepare(request)
        await _send(request.app[STORAGE], resp, pieces, first, last)
        await resp.write_eof()
    return resp


async def _send(storage: MediaStorage, resp: web.StreamResponse, pieces: list[Piece], first: int, last: int) -> None:
    offset = 0
    for p in pieces:
        lo, hi = max(first, offset), min(last, offset + p.size - 1)
        skip = lo - offset
        offset += p.size
        if lo > hi:
            continue
        if p.data:
            await resp.write(p.data[skip : skip + hi - lo + 1])
            continue
        try:
            fh = await asyncio.to_thread(storage.open, p.sha256)
        except NotFound:
            return  # destroyed by retention meanwhile: the answer ends short and the player reports an error
        try:
            if skip and getattr(fh, "seekable", lambda: False)():
                await asyncio.to_thread(fh.seek, skip)
            else:
                while skip > 0:  # S3 bodies do not seek: read past the start
                    dropped = await asyncio.to_thread(fh.read, min(CHUNK, skip))
                    if not dropped:
                        break
                    skip -= len(dropped)
            want = hi - lo + 1
            while want > 0:
                chunk = await asyncio.to_thread(fh.read, min(CHUNK, want))
                if not chunk:
                    break
                await resp.write(chunk)
                want -= len(chunk)
        finally:
            fh.close()
