"""The live path end to end: a real recording (synthetic camera + microphone, 320x180) tapped by the live
publisher → a real aiohttp server (live routes behind the auth TEST STAND-IN) → a WebSocket viewer, ffmpeg
on the HLS playlist, the grid page in Debian's Chromium, and a slow viewer beside a fast one."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.sync_api import expect, sync_playwright

from media.calibration import ffmpeg_exe
from media.live import HEADER, Chunk, codecs_of_init
from media.recorder import Recorder, RecorderConfig, SourceConfig
from media.track import EncodeSettings
from review_server.live import LiveHub, Viewer, create_live_test_app
from scripts.harness.browser import CHROMIUM_VIDEO_ARGS as CHROMIUM_ARGS
from scripts.harness.browser import chromium_executable
from station_agent.live_publisher import CameraFeed, LivePublisher

from .server_thread import ServerThread

TOKEN = "station-token-S1"
OBSERVER = {"osce_session": "observer-cookie"}


class LiveStack:
    def __init__(self, tmp: Path) -> None:
        # A small viewer queue and send buffer, so that a stalled viewer overflows within seconds here.
        self.hub = LiveHub(viewer_queue=40, viewer_sndbuf=4096)
        self.server = ServerThread(create_live_test_app({TOKEN: "S1"}, {"observer-cookie": "observer"}, self.hub))
        self.url = self.server.start()
        self.publisher = LivePublisher(self.url, "S1", TOKEN)
        self.publisher.set_meta(station_name="Станция 1 — СЛР", candidate="2611001", recording=True,
                                warnings=["тестовое предупреждение"])
        self._pub_thread = threading.Thread(target=lambda: asyncio.run(self.publisher.run()), daemon=True)
        self._pub_thread.start()
        self.recorder = Recorder(RecorderConfig(
            out_dir=tmp / "rec", videos=[SourceConfig("synthetic:label=S1 cam0"), SourceConfig("synthetic:seed=2")],
            audio=SourceConfig("synthetic"), width=320, height=180, station="S1",
            encode=EncodeSettings(crf=16), live=self.publisher.attach))
        self.recorder.start()

    def wait_live(self, camera: str = "cam0", timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            channel = self.hub.channels.get(("S1", camera))
            if channel is not None and channel.init is not None and channel.gop:
                return
            time.sleep(0.1)
        raise AssertionError(f"no live stream from S1/{camera} after {timeout} s")

    def close(self) -> None:
        self.recorder.stop()
        self.publisher.stop()
        self._pub_thread.join(10)
        self.server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    s = LiveStack(tmp_path_factory.mktemp("live"))
    try:
        s.wait_live("cam0")
        s.wait_live("cam1")
        yield s
    finally:
        s.close()
    assert not s.recorder.failures, s.recorder.failures


async def _collect(url: str, seconds: float, cookies: dict[str, str] = OBSERVER) -> list[tuple[float, Chunk]]:
    out = []
    async with aiohttp.ClientSession(cookies=cookies) as session, session.ws_connect(url) as ws:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            out.append((time.monotonic(), Chunk.decode(msg.data)))
    return out


def _ffmpeg_errors(*args: str, timeout: float = 60) -> tuple[int, str]:
    result = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", *args, "-f", "null", "-"],
                            capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stderr


async def test_viewer_gets_init_gop_and_chunks_that_decode(stack: LiveStack, tmp_path: Path) -> None:
    ws_url = stack.url.replace("http", "ws") + "/api/live/S1/cam0/ws"
    got = await _collect(ws_url, 3.0)
    kinds = [c.kind for _, c in got]
    assert kinds[:2] == [b"I", b"K"], kinds[:5]
    assert kinds.count(b"I") == 1 and len(got) > 60  # ~25 frames/s plus audio
    assert re.fullmatch(r"avc1\.64[0-9a-f]{4}, mp4a\.40\.2", codecs_of_init(got[0][1].data))  # High, AAC
    times = [c.t for _, c in got[1:] if c.kind == b"K"]
    assert times == sorted(times)
    path = tmp_path / "live.mp4"
    path.write_bytes(b"".join(c.data for _, c in got))
    code, errors = _ffmpeg_errors("-i", str(path))
    assert code == 0 and errors == "", errors
    probe = subprocess.run([ffmpeg_exe(), "-nostdin", "-i", str(path), "-map", "0:a", "-f", "null", "-"],
                           capture_output=True, text=True)
    assert "Audio: aac" in probe.stderr and "320x180" in probe.stderr


async def test_live_routes_refuse_the_wrong_caller(stack: LiveStack) -> None:
    base = stack.url.replace("http", "ws")
    async with aiohttp.ClientSession() as session:
        for url, headers in [(f"{base}/api/live/S1/cam0/ws", {}),  # nobody
                             (f"{base}/api/live/S1/cam0/ws", {"Authorization": f"Bearer {TOKEN}"}),  # a station
                             (f"{base}/api/live/S2/cam0/publish", {"Authorization": f"Bearer {TOKEN}"}),
                             (f"{base}/api/live/S1/cam0/ws", {"Cookie": "osce_session=observer-cookie",
                                                              "Origin": "https://evil.example"})]:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await session.ws_connect(url, headers=headers)
            assert info.value.status == 403, url
        async with session.get(f"{stack.url}/live/S1/cam0/index.m3u8?token=1.bad") as r:
            assert r.status == 401


def test_hls_playlist_plays_in_ffmpeg(stack: LiveStack) -> None:
    req = urllib.request.Request(f"{stack.url}/api/live/S1/cam0/hls",
                                 headers={"Cookie": "osce_session=observer-cookie"})
    with urllib.request.urlopen(req, timeout=5) as r:
        url = stack.url + json.loads(r.read())["url"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=5) as r:
            playlist = r.read().decode()
        if playlist.count("#EXTINF") >= 2:
            break
        time.sleep(0.5)
    assert "#EXT-X-MAP:URI=\"init.mp4?token=" in playlist and "#EXT-X-TARGETDURATION:2" in playlist, playlist
    code, errors = _ffmpeg_errors("-i", url, "-t", "3")
    assert code == 0 and errors == "", errors


def test_grid_page_plays_every_camera_in_chromium(stack: LiveStack) -> None:
    executable = chromium_executable()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_cookies([{"name": "osce_session", "value": "observer-cookie", "url": stack.url}])
            page = context.new_page()
            external: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(stack.url) else external.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
            page.goto(stack.url + "/live")
            assert page.evaluate("MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.64000d, mp4a.40.2\"')")
            tile = page.locator('.tile[data-station="S1"]')
            expect(tile.locator(".name")).to_have_text("Станция 1 — СЛР")
            expect(tile.locator(".candidate")).to_have_text("Кандидат № 2611001")
            expect(tile.locator(".rec")).to_be_visible()
            expect(tile.locator(".warnings")).to_have_text("тестовое предупреждение")
            _assert_plays(page, '.tile[data-station="S1"] video')
            # The audio meter moves (the synthetic microphone beeps every second).
            page.wait_for_function("Number(document.querySelector('.tile').dataset.peak || 0) > 30", timeout=5000)
            # Enlarged, with sound, the other camera.
            tile.click()
            expect(page.locator("#overlay")).to_be_visible()
            expect(page.locator("#big-cameras button")).to_have_count(2)
            page.locator("#big-cameras button", has_text="Камера 2").click()
            expect(page.locator("#big-cameras button", has_text="Камера 2")).to_have_attribute("aria-pressed", "true")
            _assert_plays(page, "#big-slot video")
            assert external == []  # no CDN, nothing from elsewhere
            assert errors == []  # no script errors, no MSE warnings
        finally:
            browser.close()


def _assert_plays(page, selector: str) -> None:  # noqa: ANN001 - playwright Page
    page.wait_for_function(f"document.querySelector('{selector}').getVideoPlaybackQuality().totalVideoFrames > 5",
                           timeout=15000)
    js = f"""() => {{ const v = document.querySelector('{selector}');
        return [v.currentTime, v.getVideoPlaybackQuality().totalVideoFrames, v.webkitAudioDecodedByteCount,
                v.buffered.length ? v.buffered.end(v.buffered.length - 1) : 0]; }}"""
    t0, f0, _, _ = page.evaluate(js)
    page.wait_for_timeout(2000)
    t1, f1, audio_bytes, end = page.evaluate(js)
    assert t1 - t0 > 1.2, (t0, t1)  # plays in real time
    assert f1 - f0 > 25, (f0, f1)
    assert audio_bytes > 0  # the audio track is decoded
    assert end - t1 < 1.5, (end, t1)  # at the live edge


def _stalled_viewer(port: int) -> socket.socket:
    """A WebSocket viewer that completes the handshake and then never reads (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/live/S1/cam0/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\nCookie: osce_session=observer-cookie\r\n\r\n")
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


async def test_slow_viewer_does_not_delay_a_fast_one(stack: LiveStack) -> None:
    slow = _stalled_viewer(stack.server.port)
    try:
        got = await _collect(stack.url.replace("http", "ws") + "/api/live/S1/cam0/ws", 6.0)
        channel = stack.hub.channels[("S1", "cam0")]
        slow_viewer = max(channel.viewers, key=lambda v: v.dropped)
        assert slow_viewer.skips >= 1 and slow_viewer.dropped > 20  # moved to the live edge, stale data dropped
    finally:
        slow.close()
    arrivals = [at for at, c in got[1:]]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    # After the joiner's backlog (init + the GOP so far, up to 2 s old by design), chunks arrive live.
    keys = [i for i, (_, c) in enumerate(got) if c.key]
    assert len(keys) >= 3, "a key frame every 2 s"
    live = got[keys[1]:]
    late = [c for at, c in live if at - (stack.recorder.origin + c.t) > 0.5]
    assert max(gaps) < 0.25, max(gaps)  # 25 frames/s + audio: a chunk at least every 40 ms or so
    assert len(got) > 6 * 25  # at least one chunk per video frame (25 fps), audio between
    assert late == [], f"{len(late)} of {len(live)} chunks over 0.5 s behind capture"
    assert HEADER.size == 9


def test_publisher_reconnects_after_the_server_drops_it(stack: LiveStack) -> None:
    channel = stack.hub.channels[("S1", "cam1")]
    before = stack.publisher.connects
    assert channel.publisher is not None
    asyncio.run_coroutine_threadsafe(channel.publisher.close(), stack.server.loop).result(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (stack.publisher.connects > before and channel.publisher is not None
                                               and channel.gop and time.monotonic() - channel.received_at < 0.2):
        time.sleep(0.05)
    assert stack.publisher.connects > before and channel.publisher is not None
    assert channel.init is not None and HEADER.unpack_from(channel.gop[0])[0] == b"K"  # init + GOP resent


def test_viewer_queue_overflow_resumes_at_the_next_key_frame() -> None:
    viewer = Viewer(max_messages=3)
    viewer.offer(b"I", b"init")
    for i in range(5):
        viewer.offer(b"C" if i else b"K", f"c{i}".encode())
    # Full at c3: what was queued (but the init) is dropped; nothing until a key frame.
    assert [m for _, m, _ in viewer.queue] == [b"init"] and viewer.skips == 1 and viewer.need_key
    viewer.offer(b"K", b"k5")
    viewer.offer(b"C", b"c6")
    assert [m for _, m, _ in viewer.queue] == [b"init", b"k5", b"c6"]


def test_a_viewer_more_than_max_lag_behind_resumes_at_the_next_key_frame() -> None:
    viewer = Viewer(max_messages=1000, max_lag_s=0.2)
    viewer.offer(b"I", b"init")
    viewer.offer(b"K", b"k0")
    viewer.offer(b"C", b"c1")
    assert viewer.skips == 0  # fresh: kept however many there are
    time.sleep(0.3)  # nobody took them: the oldest waited longer than max_lag_s
    viewer.offer(b"C", b"c2")
    assert [m for _, m, _ in viewer.queue] == [b"init"] and viewer.skips == 1 and viewer.need_key
    viewer.offer(b"K", b"k3")
    assert [m for _, m, _ in viewer.queue] == [b"init", b"k3"]


def test_publisher_feed_drops_to_the_next_key_frame_when_the_server_is_slow() -> None:
    feed = CameraFeed("cam0", max_bytes=100)
    feed._on_chunk(Chunk(b"I", 0, b"i" * 50))
    feed._on_chunk(Chunk(b"K", 0, b"k" * 40))
    feed._on_chunk(Chunk(b"C", 0.04, b"c" * 40))  # over 100 bytes: drop all but the init, wait for a key
    feed._on_chunk(Chunk(b"C", 0.08, b"c" * 10))
    assert [c.kind for c in feed._queue] == [b"I"] and feed.dropped == 3
    feed._on_chunk(Chunk(b"K", 2.0, b"k" * 10))
    assert [c.kind for c in feed._queue] == [b"I", b"K"]
