"""Live fan-out: a station publishes each camera's live chunks (media/live.py wire format) over one
WebSocket; the server passes the same bytes on (no re-encode, no re-mux) to viewers over WebSocket (MSE in
the grid page) and as an HLS live playlist of fMP4 segments cut at key frames.

Routes (`add_live_routes(app, who)`), with the permission each declares (roles.py):

- ``GET /api/live/{station}/{camera}/publish``  WebSocket, station.upload (and the token's own station)
- ``GET /api/live/{station}/{camera}/ws``       WebSocket, recordings.view: init, GOP-from-key, live chunks
- ``GET /api/live/streams``                      recordings.view: stations, cameras, meta (JSON)
- ``GET /api/live/{station}/{camera}/hls``       recordings.view: a signed HLS URL for players that cannot log in
- ``GET /live/{station}/{camera}/index.m3u8``, ``…/init.mp4``, ``…/{seq}.m4s``: public at the middleware;
  the handler wants a session allowed recordings.view OR ``?token=`` from the route above (HMAC of
  station/camera/expiry with a per-process secret, valid LIVE_TOKEN_TTL_S): `ffmpeg -i "<url>"` plays it.
- ``GET /live`` and ``GET /live/assets/{name}``   recordings.view: the observation grid page (with the session's
  CSRF token and role from `page_meta`, an examiner marks the enlarged station's checklist beside it; the
  attempt and checklist come from routes/live_attempt.py, marks go to ``POST /api/attempts/{id}/marks``).

A station's text messages are its meta (META_KEYS; anything else is dropped): station name, candidate number,
recording, warnings (``{"code", "text"}`` or plain strings), attempt_id and checklist_hash, phase and time_left,
and on the CPR station ``cpr`` ``{"rate_per_min", "compressions", "ccf", "confidence", "estimate"}``.

Back-pressure: every viewer has a bounded queue; a publisher's message is offered to each viewer without
waiting. A viewer whose oldest queued message has waited more than MAX_LAG_S (or whose queue is full) loses
what is queued and resumes at the next key frame (nothing stale is sent), so a slow viewer never slows the
station or the other viewers. Viewer sockets get small writer and kernel buffers (64 KiB, doubled by the
kernel), so that at most a couple of seconds sit below the queue at a low-bitrate stream.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from html import escape
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from media.live import HEADER, INIT, KEY

from .roles import allowed, permission_of, public, requires

log = logging.getLogger(__name__)

Who = Callable[[web.Request], tuple[str | None, str | None]]  # -> (principal, station code of a token)
DayStations = Callable[[web.Request], Awaitable[list[dict[str, Any]]]]
MayView = Callable[[web.Request, str], Awaitable[bool]]  # (request, station code) -> allowed (examiner scope)

STATIC = Path(__file__).parent / "static" / "live"
ASSETS = {"live.js": "text/javascript", "live.css": "text/css"}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
LIVE_TOKEN_TTL_S = 3600
HLS_WINDOW = 6
MAX_MESSAGE = 16 * 1024 * 1024
MAX_LAG_S = 2.0  # a viewer whose oldest queued chunk waited longer than this is moved to the live edge
# What a station's meta may tell the grid (anything else is dropped): the attempt and its checklist version
# (for marking beside the picture), phase and seconds left, health warnings, and the CPR estimate if any.
META_KEYS = ("station_name", "candidate", "recording", "warnings", "attempt_id", "checklist_hash", "phase",
             "time_left", "cpr")


class Viewer:
    """One viewer's bounded queue of encoded messages: a viewer more than max_lag_s (or max_messages) behind
    loses what is queued and resumes at the next key frame."""

    def __init__(self, max_messages: int, max_lag_s: float = MAX_LAG_S) -> None:
        self.queue: deque[tuple[bytes, bytes, float]] = deque()  # (kind, message, queued at)
        self.max_messages, self.max_lag_s = max_messages, max_lag_s
        self.need_key = False
        self.dropped = 0
        self.skips = 0  # times moved to the live edge
        self.ready = asyncio.Event()

    def _behind(self, now: float) -> bool:
        if len(self.queue) >= self.max_messages:
            return True
        oldest = next((m for m in self.queue if m[0] != INIT), None)  # an init, if any, is only at the front
        return oldest is not None and now - oldest[2] > self.max_lag_s

    def offer(self, kind: bytes, message: bytes) -> None:
        now = time.monotonic()
        if kind == INIT:
            self.queue.clear()
            self.need_key = False
        elif self.need_key and kind != KEY:
            self.dropped += 1
            return
        elif self._behind(now):
            kept = [m for m in self.queue if m[0] == INIT]
            self.dropped += len(self.queue) - len(kept)
            self.queue = deque(kept)
            self.skips += 1
            self.need_key = kind != KEY
            if self.need_key:
                self.dropped += 1
                return
        self.need_key = False
        self.queue.append((kind, message, now))
        self.ready.set()

    async def pump(self, ws: web.WebSocketResponse) -> None:
        while not ws.closed:
            if not self.queue:
                self.ready.clear()
                await self.ready.wait()
                continue
            _, message, _ = self.queue.popleft()
            await ws.send_bytes(message)


@dataclass
class Segment:
    seq: int
    duration: float
    data: bytes


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
    _seg_parts: list[bytes] = field(default_factory=list)
    _seg_start: float | None = None
    _seg_seq: int = 0

    def publish(self, message: bytes) -> None:
        kind, t = HEADER.unpack_from(message)
        self.received_at = time.monotonic()
        if kind == INIT:
            self.init, self.gop = message, []
            self._seg_parts, self._seg_start = [], None
            self.segments.clear()
        elif kind == KEY:
            self.gop = [message]
        elif self.gop:
            self.gop.append(message)
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
                                             b"".join(self._seg_parts)))
            self._seg_parts, self._seg_start = [payload], t
        elif kind != INIT and self._seg_start is not None:
            self._seg_parts.append(payload)

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
    def __init__(self, viewer_queue: int = 400, viewer_sndbuf: int = 64 * 1024) -> None:
        self.channels: dict[tuple[str, str], Channel] = {}
        self.viewer_queue = viewer_queue
        self.viewer_sndbuf = viewer_sndbuf
        self.secret = secrets.token_bytes(32)

    def channel(self, station: str, camera: str) -> Channel:
        key = (station, camera)
        if key not in self.channels:
            self.channels[key] = Channel(station, camera)
        return self.channels[key]

    # -- signed HLS URLs ------------------------------------------------------------------------
    def sign(self, station: str, camera: str, expires: int) -> str:
        mac = hmac.new(self.secret, f"{station}/{camera}/{expires}".encode(), hashlib.sha256).hexdigest()[:40]
        return f"{expires}.{mac}"

    def token_ok(self, station: str, camera: str, token: str) -> bool:
        expires, _, _ = token.partition(".")
        if not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(self.sign(station, camera, int(expires)), token)


LIVE_HUB = web.AppKey("live_hub", LiveHub)
LIVE_WHO = web.AppKey("live_who", object)
LIVE_DAY = web.AppKey("live_day_stations", object)
LIVE_MAY_VIEW = web.AppKey("live_may_view", object)
LIVE_PAGE_META = web.AppKey("live_page_meta", object)
LIVE_STILL_OK = web.AppKey("live_still_ok", object)
TOKEN_RECHECK_S = 5.0
_background: set[asyncio.Future[Any]] = set()


def _names(request: web.Request) -> tuple[str, str]:
    station, camera = request.match_info["station"], request.match_info["camera"]
    if not NAME_RE.fullmatch(station) or not NAME_RE.fullmatch(camera):
        raise web.HTTPBadRequest(reason="station and camera: letters, digits, '_' or '-'")
    return station, camera


def _who(request: web.Request) -> tuple[str | None, str | None]:
    return request.app[LIVE_WHO](request)  # type: ignore[operator]


async def _may_view(request: web.Request, station: str) -> bool:
    check = request.app.get(LIVE_MAY_VIEW)
    return True if check is None else await check(request, station)  # type: ignore[operator]


async def _require_view(request: web.Request, station: str) -> None:
    if not await _may_view(request, station):
        raise web.HTTPForbidden(reason=f"station {station} is not assigned to you")


@requires("station.upload")
async def publish(request: web.Request) -> web.StreamResponse:
    station, camera = _names(request)
    if _who(request)[1] != station:
        raise web.HTTPForbidden(reason=f"this token may not publish for station {station}")
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    channel = request.app[LIVE_HUB].channel(station, camera)
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
            elif msg.type == WSMsgType.TEXT:
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


@requires("recordings.view")
async def watch(request: web.Request) -> web.StreamResponse:
    station, camera = _names(request)
    hub = request.app[LIVE_HUB]
    origin = request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1] != request.host:
        raise web.HTTPForbidden(reason="WebSocket from another site")
    await _require_view(request, station)
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
    channel = hub.channel(station, camera)
    channel.join(viewer)
    pump = asyncio.create_task(viewer.pump(ws))
    try:
        async for _ in ws:
            pass  # viewers send nothing we need
    finally:
        channel.viewers.discard(viewer)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # a dead viewer's socket errors
            await pump
    return ws


@requires("recordings.view")
async def streams(request: web.Request) -> web.Response:
    hub = request.app[LIVE_HUB]
    day_fn = request.app.get(LIVE_DAY)
    day = await day_fn(request) if day_fn is not None else []  # type: ignore[operator]
    stations: dict[str, dict[str, Any]] = {s["code"]: {"station": s["code"], "station_name": s.get("name", s["code"]),
                                                       "cameras": [], "live": False} for s in day}
    now = time.monotonic()
    for (code, camera), ch in sorted(hub.channels.items()):
        if not await _may_view(request, code):
            continue
        entry = stations.setdefault(code, {"station": code, "station_name": code, "cameras": [], "live": False})
        live = ch.publisher is not None and ch.init is not None and now - ch.received_at < 5
        entry["cameras"].append({"camera": camera, "live": live})
        entry["live"] = entry["live"] or live
        entry.update({k: v for k, v in ch.meta.items() if v is not None})
    return web.json_response({"stations": list(stations.values())})


@requires("recordings.view")
async def hls_url(request: web.Request) -> web.Response:
    station, camera = _names(request)
    await _require_view(request, station)
    expires = int(time.time()) + LIVE_TOKEN_TTL_S
    token = request.app[LIVE_HUB].sign(station, camera, expires)
    return web.json_response({"url": f"/live/{station}/{camera}/index.m3u8?token={token}", "expires": expires})


async def _hls_channel(request: web.Request) -> tuple[Channel, str]:
    station, camera = _names(request)
    hub = request.app[LIVE_HUB]
    token = request.query.get("token", "")
    if hub.token_ok(station, camera, token):
        pass  # signed by /hls for a viewer who was allowed then
    elif allowed("recordings.view", _who(request)[0]):
        await _require_view(request, station)
    else:
        raise web.HTTPUnauthorized(reason="sign in, or use the URL from /api/live/{station}/{camera}/hls")
    channel = hub.channels.get((station, camera))
    if channel is None or channel.init is None:
        raise web.HTTPNotFound(reason=f"no live stream from {station}/{camera}")
    return channel, f"?token={token}" if token else ""


@public
async def hls_playlist(request: web.Request) -> web.Response:
    channel, query = await _hls_channel(request)
    return web.Response(text=channel.playlist(query), content_type="application/vnd.apple.mpegurl",
                        headers={"Cache-Control": "no-cache"})


@public
async def hls_init(request: web.Request) -> web.Response:
    channel, _ = await _hls_channel(request)
    assert channel.init is not None
    return web.Response(body=channel.init[HEADER.size:], content_type="video/mp4")


@public
async def hls_segment(request: web.Request) -> web.Response:
    channel, _ = await _hls_channel(request)
    seq = request.match_info["seq"]
    for s in channel.segments:
        if str(s.seq) == seq:
            return web.Response(body=s.data, content_type="video/iso.segment")
    raise web.HTTPNotFound(reason=f"segment {seq} is not in the live window")


@requires("recordings.view")
async def page(request: web.Request) -> web.Response:
    """The grid page; `page_meta(request)` (if given) adds <meta> tags: the CSRF token and who is watching,
    which turn on marking beside the enlarged picture."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    meta_fn = request.app.get(LIVE_PAGE_META)
    tags = "".join(f'<meta name="{escape(k)}" content="{escape(v)}">'
                   for k, v in (meta_fn(request) if meta_fn is not None else {}).items())  # type: ignore[operator]
    return web.Response(text=html.replace("<!--page-meta-->", tags), content_type="text/html",
                        headers={"Cache-Control": "no-store"})


@requires("recordings.view")
async def asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name, headers={"Content-Type": ASSETS[name], "Cache-Control": "no-cache"})


def add_live_routes(app: web.Application, who: Who, day_stations: DayStations | None = None,
                    may_view: MayView | None = None, hub: LiveHub | None = None,
                    page_meta: Callable[[web.Request], dict[str, str]] | None = None,
                    still_ok: Callable[[web.Request], Awaitable[bool]] | None = None) -> LiveHub:
    """Add the live routes; `who(request)` gives (principal, station code) as the auth middleware found
    them; `day_stations(request)` lists the day's stations ([{"code", "name"}]) so that silent ones show;
    `may_view(request, station)` narrows viewers further (examiners: their assigned stations only);
    `still_ok(request)` re-checks a publisher's credentials while it streams (a revoked token ends it)."""
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
    app.router.add_get("/api/live/streams", streams, allow_head=False)
    app.router.add_get("/api/live/{station}/{camera}/publish", publish, allow_head=False)
    app.router.add_get("/api/live/{station}/{camera}/ws", watch, allow_head=False)
    app.router.add_get("/api/live/{station}/{camera}/hls", hls_url, allow_head=False)
    app.router.add_get("/live", page, allow_head=False)
    app.router.add_get("/live/assets/{name}", asset, allow_head=False)
    app.router.add_get("/live/{station}/{camera}/index.m3u8", hls_playlist, allow_head=False)
    app.router.add_get("/live/{station}/{camera}/init.mp4", hls_init, allow_head=False)
    app.router.add_get(r"/live/{station}/{camera}/{seq:\d+}.m4s", hls_segment, allow_head=False)

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
                         hub: LiveHub | None = None) -> web.Application:
    """station_tokens: bearer token -> station code; session_roles: cookie value -> role."""

    def who(request: web.Request) -> tuple[str | None, str | None]:
        return request[STAND_IN_WHO]

    @web.middleware
    async def stand_in_auth(request: web.Request, handler):  # type: ignore[no-untyped-def]
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

    app = web.Application(middlewares=[stand_in_auth])
    add_live_routes(app, who, hub=hub)
    return app
