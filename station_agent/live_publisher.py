"""Sends each camera's live chunks (media/live.py) to the review server, one WebSocket per camera.

    publisher = LivePublisher("http://server:8080", "S1", token)
    config = RecorderConfig(..., live=publisher.attach)    # taps every camera's Track
    await publisher.run()                                   # until publisher.stop()

`wss://…/api/live/{station}/{camera}/publish` with `Authorization: Bearer <station token>`; the messages
are `media.live.Chunk.encode()` (binary) and, now and then, a JSON text message
``{"type": "meta", "station_name", "candidate", "recording", "warnings", "media_from"}`` (media_from: the
recording's media time 0 on the station's clock, for the time drawn over the picture).

The recorder is never slowed: its threads only append to a per-camera queue bounded in bytes. When the
server or the network is slower than the stream, the queue is emptied and sending resumes at the next key
frame (the init segment is never dropped). After a broken connection the publisher reconnects with
exponential backoff and starts again with init + the current GOP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import deque
from typing import Any

import aiohttp

from media.live import INIT, Chunk, LiveMuxer, attach
from media.track import Track

log = logging.getLogger(__name__)

MAX_QUEUE_BYTES = 2 * 1024 * 1024
BACKOFF_S = (0.5, 10.0)


class CameraFeed:
    """One camera's chunks, from the recorder's threads to the sending coroutine."""

    def __init__(self, camera: str, max_bytes: int) -> None:
        self.camera = camera
        self.max_bytes = max_bytes
        self.muxer: LiveMuxer | None = None
        self.sent = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._queue: deque[Chunk] = deque()
        self._bytes = 0
        self._need_key = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._ready = loop, asyncio.Event()

    def use(self, muxer: LiveMuxer) -> None:
        """Follow a (new) muxer: e.g. the next recording's Track."""
        old, self.muxer = self.muxer, muxer
        if old is not None:
            old.unlisten(self._on_chunk)
            old.close()
        self.restart()

    def restart(self) -> None:
        """Start over with what a joiner needs (init + GOP so far), as after a reconnect."""
        if self.muxer is None:
            return
        self.muxer.unlisten(self._on_chunk)
        with self._lock:
            self._queue.clear()
            self._bytes, self._need_key = 0, False
        snapshot = self.muxer.listen(self._on_chunk)
        with self._lock:  # chunks queued meanwhile are newer than the snapshot: it goes in front
            self._queue.extendleft(reversed(snapshot))
            self._bytes += sum(len(c.data) for c in snapshot)
        self._wake()

    def _on_chunk(self, chunk: Chunk) -> None:  # on a recorder thread: never block
        with self._lock:
            if chunk.kind == INIT:
                self._queue.clear()
                self._bytes, self._need_key = 0, False
            elif self._need_key and not chunk.key:
                self.dropped += 1
                return
            elif self._bytes + len(chunk.data) > self.max_bytes:
                kept = [c for c in self._queue if c.kind == INIT]  # the server must get the init
                self.dropped += len(self._queue) - len(kept) + (0 if chunk.key else 1)
                self._queue = deque(kept)
                self._bytes = sum(len(c.data) for c in kept)
                self._need_key = not chunk.key
                if not chunk.key:
                    return
            self._need_key = False
            self._queue.append(chunk)
            self._bytes += len(chunk.data)
        self._wake()

    def _wake(self) -> None:
        if self._loop is not None and self._ready is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(self._ready.set)

    async def next(self, timeout: float) -> Chunk | None:
        assert self._ready is not None
        while True:
            with self._lock:
                if self._queue:
                    chunk = self._queue.popleft()
                    self._bytes -= len(chunk.data)
                    return chunk
                self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None


class LivePublisher:
    def __init__(self, server_url: str, station: str, token: str, max_queue_bytes: int = MAX_QUEUE_BYTES) -> None:
        self.server_url = server_url.rstrip("/")
        self.station = station
        self.token = token
        self.max_queue_bytes = max_queue_bytes
        self.feeds: dict[str, CameraFeed] = {}
        self.connects = 0
        self._meta: dict[str, Any] = {}
        self._meta_version = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping: asyncio.Event | None = None
        self._lock = threading.Lock()

    # -- from the recorder (any thread) ------------------------------------------------------------
    def attach(self, track: Track, muxer: LiveMuxer | None = None) -> LiveMuxer:
        """Tap a camera's Track (use as `RecorderConfig.live`), or send `muxer`: the camera's sub-stream, which the
        recorder copies from the camera for the live view (media/substream.py)."""
        muxer = muxer or attach(track)
        with self._lock:
            feed = self.feeds.get(track.id)
            if feed is None:
                feed = self.feeds[track.id] = CameraFeed(track.id, self.max_queue_bytes)
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(self._start, feed)
        feed.use(muxer)
        return muxer

    def set_meta(self, **meta: Any) -> None:
        """Station name, candidate number, recording (bool), warnings (list of str): shown on the grid."""
        with self._lock:
            self._meta.update(meta)
            self._meta_version += 1

    # -- the sending side (asyncio) --------------------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        with self._lock:
            for feed in self.feeds.values():
                self._start(feed)
        await self._stopping.wait()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for feed in self.feeds.values():
            if feed.muxer is not None:
                feed.muxer.close()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    def _start(self, feed: CameraFeed) -> None:
        if feed.camera not in self._tasks:
            feed.bind(asyncio.get_running_loop())
            feed.restart()
            self._tasks[feed.camera] = asyncio.create_task(self._camera(feed), name=f"live-{feed.camera}")

    async def _camera(self, feed: CameraFeed) -> None:
        url = f"{self.server_url}/api/live/{self.station}/{feed.camera}/publish"
        headers = {"Authorization": f"Bearer {self.token}"}
        backoff = BACKOFF_S[0]
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.ws_connect(url, headers=headers, heartbeat=15, max_msg_size=0) as ws:
                        self.connects += 1
                        backoff = BACKOFF_S[0]
                        log.info("live %s: publishing to %s", feed.camera, url)
                        feed.restart()
                        await self._send(ws, feed)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("live %s: %s; retrying in %.1f s", feed.camera, exc or type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_S[1])

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, feed: CameraFeed) -> None:
        meta_sent = -1
        closed = asyncio.create_task(ws.receive())  # the server sends nothing but a close
        try:
            while not closed.done():
                with self._lock:
                    version, meta = self._meta_version, dict(self._meta)
                if version != meta_sent:
                    await ws.send_str(json.dumps({"type": "meta", **meta}, ensure_ascii=False))
                    meta_sent = version
                chunk = await feed.next(timeout=1.0)
                if chunk is not None:
                    await ws.send_bytes(chunk.encode())
                    feed.sent += 1
        finally:
            closed.cancel()
