"""Live fan-out: a station publishes each camera's live chunks (media/live.py wire format) over one
WebSocket; the server passes the same bytes on (no re-encode, no re-mux) to viewers over WebSocket (MSE in
the grid page) and as an HLS live playlist of fMP4 segments cut at key frames.

Routes (`routes`, state from `configure(app, who)`), with the permission each declares (roles.py):

- ``GET /api/live/{station}/{camera}/publish``  WebSocket, station.upload (and the token's own station)
- ``GET /api/live/{station}/{camera}/ws``       WebSocket, recordings.view: init, GOP-from-key, live chunks
- ``GET /api/live/streams``                      recordings.view: stations, cameras, meta (JSON)
- ``GET /api/live/{station}/{camera}/hls``       recordings.view: a signed HLS URL for players that cannot log in
- ``GET /live/{station}/{camera}/index.m3u8``, ``…/init.mp4``, ``…/{seq}.m4s``: public at the middleware;
  the handler wants a session allowed recordings.view OR ``?token=`` from the route above: an HMAC (per-process
  secret) of station/camera/expiry and the session that asked for it, good for LIVE_TOKEN_TTL_S and only while
  that session lives and may watch the station: logging out or being disabled ends it at once. A player keeps
  watching by asking /hls again before `refresh_after` (`ffmpeg -i "<url>"` plays one URL for its lifetime).
  A viewer's WebSocket is closed (4401) the same way when its session ends.
- ``GET /live`` and ``GET /live/assets/{name}``   recordings.view: the observation grid page (with the session's
  CSRF token and role from `page_meta`, an examiner marks the enlarged station's checklist beside it; the
  attempt and checklist come from routes/live_attempt.py, marks go to ``POST /api/attempts/{id}/marks``).

A station's text messages are its meta (META_KEYS; anything else is dropped): station name, candidate number,
recording, warnings (``{"code", "text"}`` or plain strings), attempt_id and checklist_hash, phase and time_left,
and on the CPR station ``cpr`` ``{"rate_per_min", "compressions", "ccf", "confidence", "estimate"}``.

Back-pressure: every viewer has a bounded queue; a publisher's message is offered to each viewer without
waiting. A viewer whose oldest queued message has waited more than MAX_LAG_S (or whose queue is full, in
messages or bytes) loses what is queued and resumes at the next key frame (nothing stale is sent), so a slow
viewer never slows the station or the other viewers. Viewer sockets get small writer and kernel buffers (64 KiB,
doubled by the kernel), so that at most a couple of seconds sit below the queue at a low-bitrate stream.

Bounded by what a station can send, not by what it does send: a channel keeps the current GOP (what a joining
viewer needs) up to MAX_GOP_BYTES and MAX_GOP_CHUNKS, and the HLS window up to twice that; past a bound the
GOP (or the segment being cut) is dropped and the channel waits for the next key frame. A station's cameras are
its recorder's tracks, cam0, cam1, ... (media/recorder.py): only `cam0`..`cam{max_cameras-1}` are accepted, from
its publisher and from viewers alike (a viewer may open a camera before it publishes), so no request can make a
channel for any other name; a channel with no publisher and no viewer that has received nothing for `idle_s` is
removed while the server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.typedefs import Handler

from media.live import HEADER, INIT, KEY, codecs_of_init

from . import i18n, ident
from .roles import allowed, permission_of, public, requires
from .web import render, setup_templates

log = logging.getLogger(__name__)

Who = Callable[[web.Request], tuple[str | None, str | None]]  # -> (principal, station code of a token)
DayStations = Callable[[web.Request], Awaitable[list[dict[str, Any]]]]
MayView = Callable[[web.Request, str], Awaitable[bool]]  # (request, station code) -> allowed (examiner scope)
PageMeta = Callable[[web.Request], dict[str, str]]  # the grid page's meta tags (CSRF token, login, role)
StillOk = Callable[[web.Request], Awaitable[bool]]  # a publisher's credentials are still valid
SessionOf = Callable[[web.Request], str | None]  # the viewer's session reference (not its secret)
SessionAlive = Callable[[web.Request, str, str], Awaitable[bool]]  # (request, session, station) -> may still watch

STATIC = Path(__file__).parent / "static" / "live"
ASSETS = {"live.js": "text/javascript", "live.css": "text/css", "flags.js": "text/javascript", "flags.css": "text/css",
          "ident.js": "text/javascript"}
SHARED = {"ident.js": STATIC.parent / "pages" / "ident.js"}  # the identification overlay, shared with the review page
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
CAMERA_RE = re.compile(r"cam([0-9]{1,2})")
SESSION_REF_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
LIVE_TOKEN_TTL_S = 600
HLS_WINDOW = 6
MAX_MESSAGE = 16 * 1024 * 1024
MAX_META = 64 * 1024  # a station's meta message; a longer one is dropped (every viewer gets the meta)
MAX_LAG_S = 2.0  # a viewer whose oldest queued chunk waited longer than this is moved to the live edge
MAX_GOP_BYTES = 8 * 1024 * 1024  # a 2 s GOP at 8 Mbit/s is 2 MiB; past this the GOP is dropped until the next key
MAX_GOP_CHUNKS = 1000
VIEWER_MAX_BYTES = 4 * 1024 * 1024  # MAX_LAG_S of a 16 Mbit/s stream
MAX_CAMERAS = 4  # live channels per station
MAX_VIEWERS_PER_SESSION = 64  # open viewer sockets of one session (a grid of every station, enlarged views)
MAX_VIEWERS_PER_CHANNEL = 64
IDLE_S = 60.0  # a channel without publisher or viewers, silent this long, is removed
# What a station's meta may tell the grid (anything else is dropped): the attempt and its checklist version
# (for marking beside the picture), phase and seconds left, health warnings, and the CPR estimate if any.
META_KEYS = ("station_name", "candidate", "recording", "warnings", "attempt_id", "checklist_hash", "phase",
             "time_left", "cpr", "media_from")


class Viewer:
    """One viewer's bounded queue of encoded messages: a viewer more than max_lag_s (or max_messages) behind
    loses what is queued and resumes at the next key frame."""

    def __init__(self, max_messages: int, max_lag_s: float = MAX_LAG_S, max_bytes: int = VIEWER_MAX_BYTES) -> None:
        self.queue: deque[tuple[bytes, bytes, float]] = deque()  # (kind, message, queued at)
        self.max_messages, self.max_lag_s, self.max_bytes = max_messages, max_lag_s, max_bytes
        self.bytes = 0
        self.need_key = False
        self.dropped = 0
        self.skips = 0  # times moved to the live edge
        self.ready = asyncio.Event()

    def _behind(self, now: float, size: int) -> bool:
        if len(self.queue) >= self.max_messages or self.bytes + size > self.max_bytes:
            return True
        oldest = next((m for m in self.queue if m[0] != INIT), None)  # an init, if any, is only at the front
        return oldest is not None and now - oldest[2] > self.max_lag_s

    def offer(self, kind: bytes, message: bytes) -> None:
        now = time.monotonic()
        if kind == INIT:
            self.queue.clear()
            self.bytes = 0
            self.need_key = False
        elif self.need_key and kind != KEY:
            self.dropped += 1
            return
        elif self._behind(now, len(message)):
            kept = [m for m in self.queue if m[0] == INIT]
            self.dropped += len(self.queue) - len(kept)
            self.queue = deque(kept)
            self.bytes = sum(len(m[1]) for m in kept)
            self.skips += 1
            self.need_key = kind != KEY
            if self.need_key or self.bytes + len(message) > self.max_bytes:
                self.need_key = True
                self.dropped += 1
                return
        self.need_key = False
        self.queue.append((kind, message, now))
        self.bytes += len(message)
        self.ready.set()

    async def pump(self, ws: web.WebSocketResponse) -> None:
        while not ws.closed:
            if not self.queue:
                self.ready.clear()
                await self.ready.wait()
                continue
            _, message, _ = self.queue.popleft()
            self.bytes -= len(message)
            await ws.send_bytes(message)


@dataclass
class Segment:
    seq: int
    duration: float
    data: bytes
    start: float = 0.0  # the recording-clock time of its first frame (its WebVTT cues are placed from here)


@dataclass
class Channel:
    station: str
    camera: str
    init: bytes | None = None  # encoded messages (header + payload)
    gop: list[bytes] = field(default_factory=list)
    viewers: set[Viewer] = field(default_factory=set)
    meta: dict[str, Any] = field(default_factory=dict)
    publisher: web.WebSocketResponse | None = None
    last_t: float = 0.0
    received_at: float = 0.0
    segments: deque[Segment] = field(default_factory=lambda: deque(maxlen=HLS_WINDOW))
    max_gop_bytes: int = MAX_GOP_BYTES
    created_at: float = field(default_factory=time.monotonic)
    gop_bytes: int = 0
    gop_dropped: int = 0  # GOPs dropped for passing the bounds
    _seg_parts: list[bytes] = field(default_factory=list)
    _seg_bytes: int = 0
    _seg_start: float | None = None
    _seg_seq: int = 0
    # The wall time (epoch s) of media time 0 as the chunks' arrival bounds it (the earliest arrival less its time),
    # for a picture's clock when the station's meta has no media_from (ident.py).
    origin: float | None = None

    def publish(self, message: bytes) -> None:
        kind, t = HEADER.unpack_from(message)
        self.received_at = time.monotonic()
        if kind != INIT:
            seen = time.time() - t
            self.origin = seen if self.origin is None else min(self.origin, seen)
        if kind == INIT:
            self.origin = None
            self.init, self.gop, self.gop_bytes = message, [], 0
            self._seg_parts, self._seg_bytes, self._seg_start = [], 0, None
            self.segments.clear()
        elif kind == KEY:
            self.gop, self.gop_bytes = [message], len(message)
        elif self.gop:
            if self.gop_bytes + len(message) > self.max_gop_bytes or len(self.gop) >= MAX_GOP_CHUNKS:
                self.gop, self.gop_bytes = [], 0  # a joiner waits for the next key frame instead
                self.gop_dropped += 1
            else:
                self.gop.append(message)
                self.gop_bytes += len(message)
        self.last_t = t if kind != INIT else self.last_t
        self._hls(kind, t, message[HEADER.size:])
        for viewer in self.viewers:
            viewer.offer(kind, message)

    def join(self, viewer: Viewer) -> None:
        if self.init is not None:
            viewer.offer(INIT, self.init)
            for message in self.gop:
                viewer.offer(message[:1], message)
        self.viewers.add(viewer)

    def _hls(self, kind: bytes, t: float, payload: bytes) -> None:
        if kind == KEY:
            if self._seg_start is not None and self._seg_parts:
                self._seg_seq += 1
                self.segments.append(Segment(self._seg_seq, max(t - self._seg_start, 0.001),
                                             b"".join(self._seg_parts), self._seg_start))
                while sum(len(s.data) for s in self.segments) > 2 * self.max_gop_bytes:
                    self.segments.popleft()
            self._seg_parts, self._seg_bytes, self._seg_start = [payload], len(payload), t
        elif kind != INIT and self._seg_start is not None:
            if self._seg_bytes + len(payload) > self.max_gop_bytes:  # not cut into a segment: wait for a key
                self._seg_parts, self._seg_bytes, self._seg_start = [], 0, None
            else:
                self._seg_parts.append(payload)
                self._seg_bytes += len(payload)

    def playlist(self, query: str) -> str:
        segments = list(self.segments)
        target = max([1, *(math.floor(s.duration + 0.5) for s in segments)])  # HLS: EXTINF rounded
        lines = ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{target}",
                 f"#EXT-X-MEDIA-SEQUENCE:{segments[0].seq if segments else 0}",
                 f'#EXT-X-MAP:URI="init.mp4{query}"']
        for s in segments:
            lines += [f"#EXTINF:{s.duration:.3f},", f"{s.seq}.m4s{query}"]
        return "\n".join(lines) + "\n"


class LiveHub:
    def __init__(self, viewer_queue: int = 400, viewer_sndbuf: int = 64 * 1024, max_cameras: int = MAX_CAMERAS,
                 idle_s: float = IDLE_S, max_gop_bytes: int = MAX_GOP_BYTES) -> None:
        self.channels: dict[tuple[str, str], Channel] = {}
        self.viewer_queue = viewer_queue
        self.viewer_sndbuf = viewer_sndbuf
        self.max_cameras, self.idle_s, self.max_gop_bytes = max_cameras, idle_s, max_gop_bytes
        self.secret = secrets.token_bytes(32)
        self.sockets_of: dict[str, int] = {}  # session -> open viewer sockets

    def camera_ok(self, camera: str) -> bool:
        """One of a station's cameras: cam0 .. cam{max_cameras-1}."""
        match = CAMERA_RE.fullmatch(camera)
        return match is not None and int(match.group(1)) < self.max_cameras

    def channel(self, station: str, camera: str) -> Channel | None:
        """The station's channel for this camera (made on first use), or None if the name is not a camera's."""
        self.sweep()
        if not self.camera_ok(camera):
            return None
        key = (station, camera)
        if key not in self.channels:
            self.channels[key] = Channel(station, camera, max_gop_bytes=self.max_gop_bytes)
        return self.channels[key]

    def sweep(self, now: float | None = None) -> int:
        """Remove channels nobody publishes to or watches that have been silent for idle_s; how many."""
        now = time.monotonic() if now is None else now
        idle = [key for key, ch in self.channels.items() if ch.publisher is None and not ch.viewers
                and now - max(ch.received_at, ch.created_at) > self.idle_s]
        for key in idle:
            del self.channels[key]
        return len(idle)

    # -- signed HLS URLs ------------------------------------------------------------------------
    def sign(self, station: str, camera: str, expires: int, session: str) -> str:
        """A URL token for this camera until `expires`, for as long as `session` (a non-secret reference to the
        session that asked, e.g. its row id) lives."""
        text = f"{station}/{camera}/{expires}/{session}"
        mac = hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()[:40]
        return f"{expires}.{session}.{mac}"

    def token_session(self, station: str, camera: str, token: str) -> str | None:
        """The session a token was made for, if it is genuine and not expired; else None."""
        expires, _, rest = token.partition(".")
        session = rest.rpartition(".")[0]
        if (not re.fullmatch(r"[0-9]{1,12}", expires) or int(expires) < time.time()  # isdigit() takes "²"
                or not SESSION_REF_RE.fullmatch(session)):
            return None
        return session if hmac.compare_digest(self.sign(station, camera, int(expires), session), token) else None


routes = web.RouteTableDef()
LIVE_HUB = web.AppKey("live_hub", LiveHub)
LIVE_WHO: web.AppKey[Who] = web.AppKey("live_who")
LIVE_DAY: web.AppKey[DayStations] = web.AppKey("live_day_stations")
LIVE_MAY_VIEW: web.AppKey[MayView] = web.AppKey("live_may_view")
LIVE_PAGE_META: web.AppKey[PageMeta] = web.AppKey("live_page_meta")
LIVE_STILL_OK: web.AppKey[StillOk] = web.AppKey("live_still_ok")
LIVE_SESSION: web.AppKey[tuple[SessionOf, SessionAlive]] = web.AppKey("live_session")
# The centre's identification (ident.centre_of) and its time zone, drawn over every live picture.
LIVE_CENTRE: web.AppKey[dict[str, str]] = web.AppKey("live_centre")
TOKEN_RECHECK_S = 5.0
_background: set[asyncio.Future[Any]] = set()


def _names(request: web.Request) -> tuple[str, str]:
    station, camera = request.match_info["station"], request.match_info["camera"]
    if not NAME_RE.fullmatch(station) or not NAME_RE.fullmatch(camera):
        raise web.HTTPBadRequest(reason="station and camera: letters, digits, '_' or '-'")
    return station, camera


def _who(request: web.Request) -> tuple[str | None, str | None]:
    return request.app[LIVE_WHO](request)


async def _may_view(request: web.Request, station: str) -> bool:
    check = request.app.get(LIVE_MAY_VIEW)
    return True if check is None else await check(request, station)


async def _require_view(request: web.Request, station: str) -> None:
    if not await _may_view(request, station):
        raise web.HTTPForbidden(reason=f"station {station} is not assigned to you")


@routes.get("/api/live/{station}/{camera}/publish", allow_head=False)
@requires("station.upload")
async def publish(request: web.Request) -> web.StreamResponse:
    station, camera = _names(request)
    if _who(request)[1] != station:
        raise web.HTTPForbidden(reason=f"this token may not publish for station {station}")
    channel = request.app[LIVE_HUB].channel(station, camera)
    if channel is None:
        raise web.HTTPForbidden(reason=f"a station's cameras are cam0..cam{request.app[LIVE_HUB].max_cameras - 1}")
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    if channel.publisher is not None:  # a reconnecting station replaces its stale connection
        task = asyncio.ensure_future(channel.publisher.close())
        _background.add(task)
        task.add_done_callback(_background.discard)
    channel.publisher = ws
    log.info("live %s/%s: station publishing", station, camera)
    recheck = asyncio.ensure_future(_close_when_revoked(request, ws))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY and len(msg.data) >= HEADER.size:
                channel.publish(msg.data)
            elif msg.type == WSMsgType.TEXT and len(msg.data) <= MAX_META:
                with contextlib.suppress(ValueError, AttributeError):
                    # NaN or Infinity (Python's json writes them) would make the grid's JSON.parse refuse the
                    # whole station list: they become null.
                    meta = json.loads(msg.data, parse_constant=lambda _: None)
                    channel.meta = {k: meta[k] for k in META_KEYS if k in meta}
    finally:
        recheck.cancel()
        if channel.publisher is ws:
            channel.publisher = None
    return ws


async def _close_when_revoked(request: web.Request, ws: web.WebSocketResponse) -> None:
    """A publisher's token is checked again every TOKEN_RECHECK_S: revoking a station ends its live stream."""
    still_ok = request.app.get(LIVE_STILL_OK)
    if still_ok is None:
        return
    while not ws.closed:
        await asyncio.sleep(TOKEN_RECHECK_S)
        try:
            ok = await still_ok(request)
        except Exception:  # a database hiccup is not a revocation
            log.warning("live: cannot re-check a publisher's token", exc_info=True)
            continue
        if not ok:
            log.warning("live %s: station token revoked; publishing closed", request.match_info.get("station"))
            await ws.close(code=4401, message=b"station token revoked")
            return


def _session_of(request: web.Request) -> str | None:
    hooks = request.app.get(LIVE_SESSION)
    return None if hooks is None else hooks[0](request)


async def _session_alive(request: web.Request, session: str, station: str) -> bool:
    hooks = request.app.get(LIVE_SESSION)
    return True if hooks is None else await hooks[1](request, session, station)


async def _close_when_session_ends(request: web.Request, ws: web.WebSocketResponse, station: str) -> None:
    """A viewer's session is checked again every TOKEN_RECHECK_S: a logout, a disabled account or a withdrawn
    assignment ends what it watches."""
    session = _session_of(request)
    if session is None:
        return
    while not ws.closed:
        await asyncio.sleep(TOKEN_RECHECK_S)
        try:
            alive = await _session_alive(request, session, station)
        except Exception:  # a database hiccup is not a logout
            log.warning("live: cannot re-check a viewer's session", exc_info=True)
            continue
        if not alive:
            await ws.close(code=4401, message=b"session ended")
            return


@routes.get("/api/live/{station}/{camera}/ws", allow_head=False)
@requires("recordings.view")
async def watch(request: web.Request) -> web.StreamResponse:
    station, camera = _names(request)
    hub = request.app[LIVE_HUB]
    origin = request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1] != request.host:
        raise web.HTTPForbidden(reason="WebSocket from another site")
    await _require_view(request, station)
    channel = hub.channel(station, camera)
    if channel is None:  # not one of a station's cameras: no channel is made for it
        raise web.HTTPNotFound(reason=f"no camera {camera} at {station}")
    session = _session_of(request) or "?"
    if hub.sockets_of.get(session, 0) >= MAX_VIEWERS_PER_SESSION or len(channel.viewers) >= MAX_VIEWERS_PER_CHANNEL:
        raise web.HTTPTooManyRequests(reason="too many live views open; close some")
    hub.sockets_of[session] = hub.sockets_of.get(session, 0) + 1  # counted before anything is awaited
    try:
        return await _watch(request, hub, channel, station)
    finally:
        hub.sockets_of[session] -= 1
        if not hub.sockets_of[session]:
            del hub.sockets_of[session]


async def _watch(request: web.Request, hub: LiveHub, channel: Channel, station: str) -> web.StreamResponse:
    # Little buffering below the viewer's queue (aiohttp's writer, the transport, the kernel), so that a
    # slow viewer fills its queue, where it can be moved to the live edge, within a second or two.
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096, writer_limit=hub.viewer_sndbuf)
    await ws.prepare(request)
    if request.transport is not None:
        request.transport.set_write_buffer_limits(high=hub.viewer_sndbuf)
        sock = request.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, hub.viewer_sndbuf)
    viewer = Viewer(hub.viewer_queue)
    channel.join(viewer)
    pump = asyncio.create_task(viewer.pump(ws))
    recheck = asyncio.ensure_future(_close_when_session_ends(request, ws, station))
    try:
        async for _ in ws:
            pass  # viewers send nothing we need
    finally:
        channel.viewers.discard(viewer)
        recheck.cancel()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # a dead viewer's socket errors
            await pump
    return ws


@routes.get("/api/live/streams", allow_head=False)
@requires("recordings.view")
async def streams(request: web.Request) -> web.Response:
    hub = request.app[LIVE_HUB]
    hub.sweep()
    day_fn = request.app.get(LIVE_DAY)
    day = await day_fn(request) if day_fn is not None else []
    stations: dict[str, dict[str, Any]] = {s["code"]: {"station": s["code"], "station_name": s.get("name", s["code"]),
                                                       "room": s.get("room", ""), "cameras": [], "live": False}
                                           for s in day}
    now = time.monotonic()
    for (code, camera), ch in sorted(hub.channels.items()):
        if not await _may_view(request, code):
            continue
        entry = stations.setdefault(code, {"station": code, "station_name": code, "cameras": [], "live": False})
        live = ch.publisher is not None and ch.init is not None and now - ch.received_at < 5
        entry["cameras"].append({"camera": camera, "live": live})
        entry["live"] = entry["live"] or live
        entry.update({k: v for k, v in ch.meta.items() if v is not None})
        if not entry.get("media_from") and ch.origin is not None:  # the station did not say: from the arrivals
            entry["media_from"] = _iso(ch.origin)
    return web.json_response({"stations": list(stations.values()), "centre": request.app.get(LIVE_CENTRE, {})})


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


@routes.get("/api/live/{station}/{camera}/hls", allow_head=False)
@requires("recordings.view")
async def hls_url(request: web.Request) -> web.Response:
    station, camera = _names(request)
    await _require_view(request, station)
    session = _session_of(request)
    if session is None:
        raise web.HTTPForbidden(reason="a signed URL is made for a signed-in session")
    now = int(time.time())
    expires = now + LIVE_TOKEN_TTL_S
    token = request.app[LIVE_HUB].sign(station, camera, expires, session)
    return web.json_response({"url": f"/live/{station}/{camera}/index.m3u8?token={token}",
                              "master_url": f"/live/{station}/{camera}/master.m3u8?token={token}", "expires": expires,
                              "refresh_after": now + LIVE_TOKEN_TTL_S // 2},
                             headers={"Cache-Control": "no-store"})


async def _hls_channel(request: web.Request) -> tuple[Channel, str]:
    station, camera = _names(request)
    hub = request.app[LIVE_HUB]
    token = request.query.get("token", "")
    session = hub.token_session(station, camera, token) if token else None
    if session is not None:
        if not await _session_alive(request, session, station):  # logged out, disabled, or no longer assigned
            raise web.HTTPUnauthorized(reason="the session this URL was made for has ended")
    elif allowed("recordings.view", _who(request)[0]):
        await _require_view(request, station)
    else:
        raise web.HTTPUnauthorized(reason="sign in, or use the URL from /api/live/{station}/{camera}/hls")
    channel = hub.channels.get((station, camera))
    if channel is None or channel.init is None:
        raise web.HTTPNotFound(reason=f"no live stream from {station}/{camera}")
    return channel, f"?token={token}" if token else ""


@routes.get("/live/{station}/{camera}/index.m3u8", allow_head=False)
@public
async def hls_playlist(request: web.Request) -> web.Response:
    channel, query = await _hls_channel(request)
    return web.Response(text=channel.playlist(query), content_type="application/vnd.apple.mpegurl",
                        headers={"Cache-Control": "no-cache"})


@routes.get("/live/{station}/{camera}/init.mp4", allow_head=False)
@public
async def hls_init(request: web.Request) -> web.Response:
    channel, _ = await _hls_channel(request)
    assert channel.init is not None
    return web.Response(body=channel.init[HEADER.size:], content_type="video/mp4")


@routes.get(r"/live/{station}/{camera}/{seq:\d+}.m4s", allow_head=False)
@public
async def hls_segment(request: web.Request) -> web.Response:
    channel, _ = await _hls_channel(request)
    seq = request.match_info["seq"]
    for s in channel.segments:
        if str(s.seq) == seq:
            return web.Response(body=s.data, content_type="video/iso.segment")
    raise web.HTTPNotFound(reason=f"segment {seq} is not in the live window")


# The identification as an HLS subtitle rendition (ident.webvtt): master.m3u8 names the picture's playlist and a
# WebVTT playlist whose segments match the picture's one for one; a player that shows subtitles (Safari, hls.js,
# VLC) draws the text over the picture, and the stored originals are untouched.
@routes.get("/live/{station}/{camera}/master.m3u8", allow_head=False)
@public
async def hls_master(request: web.Request) -> web.Response:
    channel, query = await _hls_channel(request)
    assert channel.init is not None
    try:
        codecs = f',CODECS="{codecs_of_init(channel.init[HEADER.size:])}"'
    except ValueError:
        codecs = ""
    text = "\n".join(["#EXTM3U", "#EXT-X-VERSION:7",
                      '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="ident",NAME="ident",LANGUAGE="ru",DEFAULT=YES,'
                      f'AUTOSELECT=YES,FORCED=YES,URI="ident.m3u8{query}"',
                      f'#EXT-X-STREAM-INF:BANDWIDTH=4000000{codecs},SUBTITLES="ident"', f"index.m3u8{query}", ""])
    return web.Response(text=text, content_type="application/vnd.apple.mpegurl", headers={"Cache-Control": "no-cache"})


@routes.get("/live/{station}/{camera}/ident.m3u8", allow_head=False)
@public
async def hls_ident_playlist(request: web.Request) -> web.Response:
    channel, query = await _hls_channel(request)
    text = channel.playlist(query).replace(".m4s", ".vtt")
    text = "\n".join(x for x in text.split("\n") if not x.startswith("#EXT-X-MAP"))
    return web.Response(text=text, content_type="application/vnd.apple.mpegurl", headers={"Cache-Control": "no-cache"})


@routes.get(r"/live/{station}/{camera}/{seq:\d+}.vtt", allow_head=False)
@public
async def hls_ident_segment(request: web.Request) -> web.Response:
    channel, _ = await _hls_channel(request)
    seq = request.match_info["seq"]
    segment = next((s for s in channel.segments if str(s.seq) == seq), None)
    if segment is None:
        raise web.HTTPNotFound(reason=f"segment {seq} is not in the live window")
    centre = request.app.get(LIVE_CENTRE, {})
    day_fn = request.app.get(LIVE_DAY)
    day = await day_fn(request) if day_fn is not None else []
    room = next((str(s.get("room") or "") for s in day if s.get("code") == channel.station), "")
    number = channel.meta.get("candidate")
    who = ident.Ident(region=centre.get("region", ""), centre_code=centre.get("centre_code", ""),
                      centre_name=centre.get("centre_name", ""), room=room, station=channel.station,
                      number=number if isinstance(number, str) else "")
    text = ident.webvtt(who, segment.start, segment.duration, _origin_of(channel),
                        centre.get("timezone", "Europe/Moscow"))
    return web.Response(text=text, content_type="text/vtt")


def _origin_of(channel: Channel) -> dt.datetime | None:
    """Media time 0 on the wall: the station's own media_from if it sent one, else the arrivals' bound."""
    said = channel.meta.get("media_from")
    if isinstance(said, str):
        with contextlib.suppress(ValueError):
            when = dt.datetime.fromisoformat(said)
            return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(channel.origin, dt.UTC) if channel.origin is not None else None


@routes.get("/live", allow_head=False)
@requires("recordings.view")
async def page(request: web.Request) -> web.Response:
    """The grid page (templates/live.html); `page_meta(request)` (if given) adds meta tags: the CSRF token and
    who is watching, which turn on marking beside the enlarged picture. The script's texts come from the
    catalogue (i18n/, section "live") through the page's data-texts."""
    meta_fn = request.app.get(LIVE_PAGE_META)
    meta = meta_fn(request) if meta_fn is not None else {}
    texts = i18n.section(i18n.lang_of(request), "live")
    return render(request, "live.html", {"meta": meta, "texts": texts}, headers={"Cache-Control": "no-store"})


@routes.get("/live/assets/{name}", allow_head=False)
@requires("recordings.view")
async def asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.FileResponse(SHARED.get(name, STATIC / name),
                            headers={"Content-Type": ASSETS[name], "Cache-Control": "no-cache"})


def configure(app: web.Application, who: Who, day_stations: DayStations | None = None,
              may_view: MayView | None = None, hub: LiveHub | None = None,
              page_meta: PageMeta | None = None, still_ok: StillOk | None = None,
              session_of: SessionOf | None = None, session_alive: SessionAlive | None = None,
              centre: dict[str, str] | None = None) -> LiveHub:
    """The live routes' state on an application that includes `routes`: `who(request)` gives (principal, station
    code) as the auth middleware found them; `day_stations(request)` lists the day's stations
    ([{"code", "name"}]) so that silent ones show; `may_view(request, station)` narrows viewers further
    (examiners: their assigned stations only); `still_ok(request)` re-checks a publisher's credentials while it
    streams (a revoked token ends it); `session_of(request)` names the viewer's session (not a secret: it goes
    into signed URLs) and `session_alive(request, session, station)` says whether it still lives and may watch
    the station (signed URLs and open viewer sockets end with it); `centre` ({region, centre_code, centre_name,
    timezone}) is drawn over every picture with the station's room (`day_stations`' "room")."""
    app[LIVE_HUB] = hub = hub or LiveHub()
    app[LIVE_WHO] = who
    if day_stations is not None:
        app[LIVE_DAY] = day_stations
    if may_view is not None:
        app[LIVE_MAY_VIEW] = may_view
    if page_meta is not None:
        app[LIVE_PAGE_META] = page_meta
    if still_ok is not None:
        app[LIVE_STILL_OK] = still_ok
    if session_of is not None and session_alive is not None:
        app[LIVE_SESSION] = (session_of, session_alive)
    app[LIVE_CENTRE] = centre or {"timezone": "Europe/Moscow"}

    async def _close_sockets(app: web.Application) -> None:
        for ch in hub.channels.values():
            if ch.publisher is not None:
                await ch.publisher.close()
    app.on_shutdown.append(_close_sockets)
    return hub


# --- TEST STAND-IN for the server's auth (review_server/auth.py + app.auth_middleware) ---------------
# Only for tests, benchmarks and demos that run the live routes without the database: fixed station
# tokens and session cookies, and the same rule as the real middleware (roles.allowed on the route's
# declared permission). Never use it in create_app.

SESSION_COOKIE = "osce_session"
STAND_IN_WHO = web.RequestKey("stand_in_who", tuple)


def create_live_test_app(station_tokens: dict[str, str], session_roles: dict[str, str],
                         hub: LiveHub | None = None, centre: dict[str, str] | None = None,
                         rooms: dict[str, str] | None = None) -> web.Application:
    """station_tokens: bearer token -> station code; session_roles: cookie value -> role; centre and rooms
    (station code -> room): the identification drawn over the pictures."""

    def who(request: web.Request) -> tuple[str | None, str | None]:
        return request[STAND_IN_WHO]

    @web.middleware
    async def stand_in_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token in station_tokens:
            request[STAND_IN_WHO] = ("station", station_tokens[token])
        else:
            request[STAND_IN_WHO] = (session_roles.get(request.cookies.get(SESSION_COOKIE, "")), None)
        route = request.match_info.route
        permission = permission_of(getattr(route, "handler", None))
        if request.match_info.http_exception is None and permission is not None \
                and not allowed(permission, request[STAND_IN_WHO][0]):
            raise web.HTTPForbidden(reason=f"needs {permission}")
        return await handler(request)

    def session_of(request: web.Request) -> str | None:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return hashlib.sha256(cookie.encode()).hexdigest()[:16] if cookie in session_roles else None

    async def session_alive(request: web.Request, session: str, station: str) -> bool:
        return any(hashlib.sha256(c.encode()).hexdigest()[:16] == session for c in session_roles)

    app = web.Application(middlewares=[stand_in_auth])
    setup_templates(app)
    app.router.add_routes(routes)
    async def day_stations(request: web.Request) -> list[dict[str, Any]]:
        return [{"code": code, "name": code, "room": room} for code, room in sorted((rooms or {}).items())]

    configure(app, who, day_stations=day_stations if rooms else None, hub=hub, session_of=session_of,
              session_alive=session_alive, centre=centre)
    return app
