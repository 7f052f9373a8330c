"""Live fan-out under load: N stations × M viewers (+1 throttled viewer) through a real `osce server run`.

One real live stream is recorded first (synthetic camera + microphone through the recorder and its LiveMuxer,
H.264 zerolatency + AAC, every chunk and the wall time it left the muxer). A publisher process then replays it
for every station over the real publish WebSocket (station token): init, then the chunks at their recorded
pace, looping from key frame to key frame with the recording-clock time t shifted by the loop's span, so each
station's t is unique and increasing. Stations are phase-shifted so their key frames do not coincide. The
publisher notes each chunk's send time (CLOCK_MONOTONIC, the same clock in every process) against (station, t).

The viewers (this process, asyncio, signed in as an observer with a session cookie) read every message and
note its arrival. Added latency = arrival − the publisher's send time of the same (station, t): the server's
fan-out plus both clients' event loops and the loopback. A stall = a gap > STALL_S (1 s) between media messages
while the publisher is sending (its own gap between the same two messages ≤ 1 s; the recording's longest pause
between chunks is about one video frame, 40 ms, and is printed).
One extra viewer on the first station reads through a raw socket with a small SO_RCVBUF at SLOW_RATE bytes/s:
the server must move it to the live edge (it skips: a jump in the chunk sequence) without delaying the others.

Baseline, same run: the same publishers and normal viewers through a bare aiohttp WebSocket relay (no auth, no
queues, no HLS, an await per viewer), its own process. Ratio = our server's CPU per delivered MB / the relay's.

Server CPU: utime + stime of the server process from /proc/<pid>/stat over the measured window.

    .venv/bin/python bench/bench_live_load.py [--quick] [--duration S] [--stations N] [--viewers N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import pickle
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import log, report  # noqa: E402

from media.live import HEADER, INIT, KEY, Chunk  # noqa: E402
from scripts.harness.ports import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench load password"
CAMERA = "cam0"
STALL_S = 1.0
SLOW_RATE = 50_000  # bytes/s the throttled viewer reads
SLOW_RCVBUF = 8192
WARMUP_S = 4.0  # publishers running, viewers joined, before the measured window
START_S = 2.5  # the viewers' time to join and the publisher process's to start
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the recorded stream ------------------------------------------------------------------------------


@dataclass
class Stream:
    init: bytes
    chunks: list[tuple[float, bytes, float, bytes]]  # (send offset s, kind, t, payload), first one a key frame
    period_s: float  # wall span of one loop (first key → the key after the last chunk)
    period_t: float  # recording-clock span of one loop

    @property
    def bytes_per_s(self) -> float:
        return sum(len(c[3]) + HEADER.size for c in self.chunks) / self.period_s


def record_stream(folder: Path, seconds: float, width: int, height: int) -> Stream:
    """A real recording's live chunks (recorder + LiveMuxer), cut from a key frame to a later key frame."""
    from media.live import attach
    from media.recorder import Recorder, RecorderConfig, SourceConfig

    got: list[tuple[float, Chunk]] = []

    def tap(track):  # noqa: ANN001, ANN202
        muxer = attach(track)
        muxer.listen(lambda c: got.append((time.monotonic(), c)))
        return muxer

    recorder = Recorder(RecorderConfig(out_dir=folder / "rec", videos=[SourceConfig("synthetic")],
                                       audio=SourceConfig("synthetic"), width=width, height=height, station="LOAD",
                                       live=tap))
    recorder.start()
    try:
        recorder.wait(seconds)
    finally:
        recorder.stop()
    init = next(c.data for _, c in got if c.kind == INIT)
    keys = [i for i, (_, c) in enumerate(got) if c.kind == KEY]
    if len(keys) < 2:
        raise RuntimeError(f"the recording has {len(keys)} key frame(s); record longer")
    # Skip the first GOP if there are more (the encoder's start-up pacing); loop up to the last key frame.
    first, last = keys[1 if len(keys) > 2 else 0], keys[-1]
    w0, t0 = got[first][0], got[first][1].t
    chunks = [(w - w0, c.kind, c.t, c.data) for w, c in got[first:last]]
    return Stream(init, chunks, got[last][0] - w0, got[last][1].t - t0)


# --- the server under test and the baseline relay -------------------------------------------------------


def seed(db_url: str, stations: list[str]) -> dict[str, str]:
    """The database: an observer and the stations with their tokens (station code -> bearer token)."""
    from review_server import auth
    from review_server.db import Database
    from review_server.migrations import upgrade
    from review_server.models import Station

    upgrade(db_url)
    auth.configure_passwords(1, 8, 1)
    database = Database(db_url)

    def make(s):  # noqa: ANN001, ANN202
        auth.add_user(s, "observer", PASSWORD, "observer")
        tokens = {}
        for code in stations:
            st = Station(code=code, name=f"Станция {code}")
            s.add(st)
            s.flush()
            tokens[code] = auth.issue_station_token(s, st)[0]
        return tokens

    try:
        return database.run(make)
    finally:
        database.dispose()


class Process:
    """A server process on a free port; its CPU from /proc/<pid>/stat."""

    def __init__(self, cmd: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen([*cmd, "--port", str(self.port)], cwd=ROOT, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.log_path = log_path

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)

    async def wait_ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.get(self.url + path, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status < 500:
                            return
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{self.url} did not start:\n{tail}")
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def start_server(folder: Path, stations: list[str]) -> tuple[Process, dict[str, str]]:
    db_url = f"sqlite:///{folder / 'osce.db'}"
    config = folder / "server.toml"
    config.write_text(f'database_url = "{db_url}"\nmedia_dir = "{folder / "media"}"\ninsecure_cookies = true\n'
                      "argon2_time_cost = 1\nargon2_memory_kib = 8\nargon2_parallelism = 1\n", encoding="utf-8")
    tokens = seed(db_url, stations)
    server = Process([sys.executable, "-m", "osce_cli", "server", "run", "--host", "127.0.0.1", "--config",
                      str(config)], folder / "server.log")
    return server, tokens


async def login(url: str) -> str:
    """The observer's session cookie, through the JSON login a browser script uses."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(url + "/login") as r:
            csrf = r.headers["X-CSRF-Token"]
        async with http.post(url + "/login", json={"login": "observer", "password": PASSWORD},
                             headers={"X-CSRF-Token": csrf, "Cookie": f"osce_login_csrf={csrf}"}) as r:
            if r.status != 200:
                raise RuntimeError(f"login: {r.status} {await r.text()}")
            return r.cookies["osce_session"].value


def relay_main(port: int) -> None:
    """The baseline: a bare WebSocket relay on the same URLs, each message awaited onto each viewer."""
    viewers: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
    inits: dict[str, bytes] = {}

    async def publish(request: web.Request) -> web.WebSocketResponse:
        station = request.match_info["station"]
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                if msg.data[:1] == INIT:
                    inits[station] = msg.data
                for viewer in list(viewers[station]):
                    with contextlib.suppress(ConnectionError):
                        await viewer.send_bytes(msg.data)
        return ws

    async def watch(request: web.Request) -> web.WebSocketResponse:
        station = request.match_info["station"]
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if station in inits:
            await ws.send_bytes(inits[station])
        viewers[station].add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            viewers[station].discard(ws)
        return ws

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/api/live/{station}/{camera}/publish", publish)
    app.router.add_get("/api/live/{station}/{camera}/ws", watch)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


# --- the publishers (their own process) -----------------------------------------------------------------


async def publish_one(url: str, station: str, token: str, stream: Stream, start: float, end: float,
                      sent: array, late: list[float]) -> None:
    """Init, then the recorded chunks at their pace, looping; `sent` gets (t, send time) pairs."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, \
            http.ws_connect(f"{url}/api/live/{station}/{CAMERA}/publish", headers=headers) as ws:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        await ws.send_bytes(HEADER.pack(INIT, 0.0) + stream.init)
        loop = 0
        while True:
            for offset, kind, t, payload in stream.chunks:
                due = start + loop * stream.period_s + offset
                if due > end:
                    return
                now = time.monotonic()
                if due > now:
                    await asyncio.sleep(due - now)
                shifted = t + loop * stream.period_t
                now = time.monotonic()
                await ws.send_bytes(HEADER.pack(kind, shifted) + payload)
                sent.extend((shifted, now))
                late.append(now - due)
            loop += 1


def publishers_main(spec_path: Path) -> None:
    spec = pickle.loads(spec_path.read_bytes())
    stream: Stream = spec["stream"]
    sent = {code: array("d") for code in spec["tokens"]}
    late: list[float] = []

    async def run() -> tuple[float, float]:
        # Stations out of phase within one GOP, as real stations are: their key frames do not coincide.
        gop_s = stream.period_s / sum(1 for c in stream.chunks if c[1] == KEY)
        n = len(spec["tokens"])
        tasks = [asyncio.create_task(publish_one(spec["url"], code, token, stream, spec["start"] + i * gop_s / n,
                                                 spec["end"], sent[code], late))
                 for i, (code, token) in enumerate(spec["tokens"].items())]
        await asyncio.sleep(max(0.0, spec["window"][0] - time.monotonic()))
        cpu0 = time.process_time()
        await asyncio.sleep(max(0.0, spec["window"][1] - time.monotonic()))
        cpu1 = time.process_time()
        await asyncio.gather(*tasks)
        return cpu0, cpu1

    cpu0, cpu1 = asyncio.run(run())
    spec_path.with_suffix(".out").write_bytes(pickle.dumps({"sent": sent, "late": late, "cpu": cpu1 - cpu0}))


# --- the viewers (this process) --------------------------------------------------------------------------


@dataclass
class Seen:
    """What one viewer received: arrival times and t of media messages, byte count."""

    station: str
    kind: str  # "normal" or "slow"
    recv: array = field(default_factory=lambda: array("d"))
    t: array = field(default_factory=lambda: array("d"))
    bytes: int = 0
    error: str = ""


async def normal_viewer(url: str, cookie: str, seen: Seen, end: float) -> None:
    ws_url = url.replace("http", "ws") + f"/api/live/{seen.station}/{CAMERA}/ws"
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http, \
                http.ws_connect(ws_url, headers={"Cookie": f"osce_session={cookie}"}, max_msg_size=0) as ws:
            while (left := end - time.monotonic()) > 0:
                try:
                    msg = await ws.receive(timeout=left)
                except TimeoutError:
                    break
                now = time.monotonic()
                if msg.type != WSMsgType.BINARY:
                    seen.error = f"{msg.type.name} {msg.extra or ''}"
                    return
                seen.bytes += len(msg.data)
                if msg.data[:1] != INIT:
                    seen.recv.append(now)
                    seen.t.append(HEADER.unpack_from(msg.data)[1])
    except (aiohttp.ClientError, OSError) as exc:
        seen.error = repr(exc)


async def slow_viewer(url: str, cookie: str, seen: Seen, end: float, rate: int, rcvbuf: int, pause: float) -> None:
    """A WebSocket client over a raw socket with a small receive buffer that reads nothing for `pause` seconds
    after the upgrade (a frozen tablet), then reads at `rate` bytes/s."""
    loop = asyncio.get_running_loop()
    host, port = url.split("//", 1)[1].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window is fixed then
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /api/live/{seen.station}/{CAMERA}/ws HTTP/1.1\r\nHost: {host}:{port}\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\nCookie: osce_session={cookie}\r\n\r\n")
        await loop.sock_sendall(sock, request.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += await loop.sock_recv(sock, 4096)
        head, buf = buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            seen.error = head.split(b"\r\n", 1)[0].decode()
            return
        step = 0.02
        # Frozen, but the socket is alive: an unsolicited pong (RFC 6455 5.5.3) every 5 s keeps the server's
        # heartbeat from closing us, so what is measured is the queue's overflow. Reading, we only answer pings.
        thawed = time.monotonic() + pause
        while (left := thawed - time.monotonic()) > 0:
            await loop.sock_sendall(sock, _ws_masked(0xA, b"frozen"))
            await asyncio.sleep(min(5.0, left))
        tick = time.monotonic()
        while time.monotonic() < end:
            data = await loop.sock_recv(sock, int(rate * step))
            if not data:
                seen.error = "closed by the server"
                return
            buf += data
            now = time.monotonic()
            while (frame := _ws_frame(buf)) is not None:
                opcode, payload, used = frame
                buf = buf[used:]
                if opcode == 0x2:
                    seen.bytes += len(payload)
                    if payload[:1] != INIT:
                        seen.recv.append(now)
                        seen.t.append(HEADER.unpack_from(payload)[1])
                elif opcode == 0x9:  # the server's heartbeat: answer, or it closes us
                    await loop.sock_sendall(sock, _ws_masked(0xA, payload))
                elif opcode == 0x8:
                    seen.error = "close frame"
                    return
            tick += len(data) / rate
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
    except OSError as exc:
        seen.error = repr(exc)
    finally:
        sock.close()


def _ws_frame(buf: bytes) -> tuple[int, bytes, int] | None:
    """(opcode, payload, bytes used) of the first whole unmasked server frame in buf, or None."""
    if len(buf) < 2:
        return None
    opcode, size, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if size == 126:
        if len(buf) < 4:
            return None
        size, at = struct.unpack_from(">H", buf, 2)[0], 4
    elif size == 127:
        if len(buf) < 10:
            return None
        size, at = struct.unpack_from(">Q", buf, 2)[0], 10
    if len(buf) < at + size:
        return None
    return opcode, buf[at:at + size], at + size


def _ws_masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


# --- one run: server (or relay) + publishers + viewers ---------------------------------------------------


@dataclass
class RunResult:
    seen: list[Seen]
    sent: dict[str, array]
    late: list[float]
    server_cpu: float
    client_cpu: float
    publisher_cpu: float
    window: tuple[float, float]


async def run_load(url: str, server: Process, tokens: dict[str, str], stream: Stream, viewers: int, slow: int,
                   duration: float, folder: Path, cookie: str, warmup: float, slow_pause: float = 0.0) -> RunResult:
    """`slow`: the throttled viewer's read rate in bytes/s (0: none)."""
    seen = [Seen(code, "normal") for code in tokens for _ in range(viewers)]
    start = time.monotonic() + START_S  # viewers join first, then the stations start
    window = (start + warmup, start + warmup + duration)
    end = window[1] + 1.0
    spec = folder / f"publishers-{server.port}.pickle"
    spec.write_bytes(pickle.dumps({"url": url, "tokens": tokens, "stream": stream, "start": start,
                                   "end": window[1], "window": window}))
    pub = subprocess.Popen([sys.executable, __file__, "--publishers", str(spec)], cwd=ROOT)
    tasks = [asyncio.create_task(normal_viewer(url, cookie, s, end)) for s in seen]
    if slow:
        seen.append(Seen(next(iter(tokens)), "slow"))
        tasks.append(asyncio.create_task(slow_viewer(url, cookie, seen[-1], end, slow, SLOW_RCVBUF, slow_pause)))
    await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
    cpu0, mine0 = server.cpu(), time.process_time()
    await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
    cpu1, mine1 = server.cpu(), time.process_time()
    await asyncio.gather(*tasks)
    if await asyncio.to_thread(pub.wait) != 0:
        raise RuntimeError("the publisher process failed")
    out = pickle.loads(spec.with_suffix(".out").read_bytes())
    return RunResult(seen, out["sent"], out["late"], cpu1 - cpu0, mine1 - mine0, out["cpu"], window)


# --- figures -----------------------------------------------------------------------------------------------


def pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


@dataclass
class ViewerFigures:
    latencies_ms: list[float]
    received: int
    expected: int
    skips: int
    stalls: int
    max_gap_s: float
    end_lag_ms: float  # latency of the last message that arrived in the window: how far from the live edge


def figures(run: RunResult, seen: Seen) -> ViewerFigures:
    """Latency of the messages sent in the window, sequence jumps (skips), gaps over STALL_S."""
    w0, w1 = run.window
    sent = run.sent[seen.station]
    table = {sent[i]: (i // 2, sent[i + 1]) for i in range(0, len(sent), 2)}
    expected = sum(1 for i in range(1, len(sent), 2) if w0 <= sent[i] <= w1)
    lat, end_lag, skips, received, last_seq = [], float("nan"), 0, 0, None
    stalls, max_gap, last = 0, 0.0, (w0, w0)  # (arrival, send time) of the previous message
    for recv, t in zip(seen.recv, seen.t, strict=True):
        seq, at = table.get(t, (None, 0.0))
        if seq is not None and recv <= w1:
            end_lag = (recv - at) * 1000
        if w0 <= recv <= w1:
            gap = recv - last[0]
            max_gap = max(max_gap, gap)
            # A stall: nothing arrived for STALL_S while the publisher was sending (its own gap was shorter),
            # so a pause of the replayed recording itself is not counted against the server.
            stalls += gap > STALL_S and seq is not None and at - last[1] <= STALL_S
            last = (recv, at if seq is not None else recv)
        if seq is None or not w0 <= at <= w1:
            continue
        received += 1
        lat.append((recv - at) * 1000)
        if last_seq is not None and seq != last_seq + 1:
            skips += 1
        last_seq = seq
    max_gap = max(max_gap, w1 - last[0])
    return ViewerFigures(lat, received, expected, skips, stalls, max_gap, end_lag)


def summarize(run: RunResult, duration: float) -> dict[str, Any]:
    slow_station = next((s.station for s in run.seen if s.kind == "slow"), None)
    classes: dict[str, list[ViewerFigures]] = defaultdict(list)
    errors = [f"{s.station}/{s.kind}: {s.error}" for s in run.seen if s.error]
    for s in run.seen:
        name = "slow" if s.kind == "slow" else "slow_station_normal" if s.station == slow_station else "normal"
        classes[name].append(figures(run, s))
    delivered = sum(s.bytes for s in run.seen)
    w0, w1 = run.window
    source_gap = max((sent[i + 2] - sent[i] for sent in run.sent.values() for i in range(1, len(sent) - 2, 2)
                      if w0 <= sent[i] <= w1), default=0.0)
    out: dict[str, Any] = {"errors": errors, "delivered_mb": round(delivered / 1e6, 1),
                           "publisher_max_gap_s": round(source_gap, 3),
                           "server_cpu_pct": round(100 * run.server_cpu / duration, 1),
                           "client_cpu_pct": round(100 * run.client_cpu / duration, 1),
                           "publisher_cpu_pct": round(100 * run.publisher_cpu / duration, 1),
                           "publisher_late_p95_ms": round(pct(run.late, 95) * 1000, 1)}
    for name, figs in classes.items():
        lat = [x for f in figs for x in f.latencies_ms]
        out[name] = {"viewers": len(figs), "received": sum(f.received for f in figs),
                     "expected": sum(f.expected for f in figs), "skips": sum(f.skips for f in figs),
                     "stalls": sum(f.stalls for f in figs), "max_gap_s": round(max(f.max_gap_s for f in figs), 3),
                     "p50_ms": round(pct(lat, 50), 1), "p95_ms": round(pct(lat, 95), 1),
                     "max_ms": round(max(lat, default=float("nan")), 1),
                     "end_lag_ms": round(max(f.end_lag_ms for f in figs), 1)}
    return out


def overflow_pause(stream: Stream) -> float:
    """How long a frozen viewer (joined START_S before the stations) takes to be moved to the live edge: the
    socket buffers below the queue (aiohttp's writer limit + the kernel's doubled SO_SNDBUF), then the queue's
    age limit (or its length, whichever comes first); plus a margin."""
    from review_server.live import MAX_LAG_S, LiveHub

    hub = LiveHub()
    rate = len(stream.chunks) / stream.period_s
    return START_S + 3 * hub.viewer_sndbuf / stream.bytes_per_s + min(MAX_LAG_S, hub.viewer_queue / rate) + 2.0


# --- main --------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s instead of 300 s")
    parser.add_argument("--duration", type=float, help="measured seconds (default 300, 30 with --quick)")
    parser.add_argument("--stations", type=int, default=12)
    parser.add_argument("--viewers", type=int, default=4, help="normal viewers per station")
    parser.add_argument("--warmup", type=float, default=WARMUP_S, help="seconds of load before the window")
    parser.add_argument("--size", default="1280x720", help="the recorded camera's size")
    parser.add_argument("--slow-rate", type=int, default=SLOW_RATE, help="bytes/s the throttled viewer reads")
    parser.add_argument("--slow-pause", default="0", help="the slow viewer first reads nothing this long (seconds, "
                        "or 'auto': until the server's queue for it must have overflowed; the window is extended)")
    parser.add_argument("--record-seconds", type=float, default=20.0, help="length of the recorded stream")
    parser.add_argument("--baseline-seconds", type=float, help="the relay's window (default min(60, duration))")
    parser.add_argument("--no-baseline", action="store_true", help="skip the relay baseline (the test does)")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new one under /tmp)")
    parser.add_argument("--publishers", type=Path, help=argparse.SUPPRESS)  # internal: the publisher process
    parser.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)  # internal: the baseline relay
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)  # internal: the relay's port
    args = parser.parse_args()
    if args.duration is None:
        args.duration = 30.0 if args.quick else 300.0
    if args.baseline_seconds is None:
        args.baseline_seconds = min(60.0, args.duration)
    return args


async def measure(args: argparse.Namespace, folder: Path, stream: Stream, server: Process,
                  tokens: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        await server.wait_ready("/health")
        cookie = await login(server.url)
        log(f"ours: {args.stations} stations × {args.viewers} viewers + 1 slow, {args.duration:g} s")
        ours = summarize(await run_load(server.url, server, tokens, stream, args.viewers, args.slow_rate, args.duration,
                                        folder, cookie, args.warmup, args.slow_pause), args.duration)
    finally:
        server.stop()
    base: dict[str, Any] = {}
    if not args.no_baseline:
        relay = Process([sys.executable, __file__, "--relay"], folder / "relay.log")
        try:
            await relay.wait_ready("/health")
            log(f"baseline: bare relay, same load without the slow viewer, {args.baseline_seconds:g} s")
            base = summarize(await run_load(relay.url, relay, tokens, stream, args.viewers, 0,
                                            args.baseline_seconds, folder, "", args.warmup), args.baseline_seconds)
        finally:
            relay.stop()
    return ours, base


def main() -> None:
    args = parse_args()
    if args.publishers is not None:
        publishers_main(args.publishers)
        return
    if args.relay:
        relay_main(args.port)
        return
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="osce-live-load-"))
    folder.mkdir(parents=True, exist_ok=True)
    width, height = (int(x) for x in args.size.split("x"))
    if args.slow_pause != "auto":
        args.slow_pause = float(args.slow_pause)
    server, tokens = start_server(folder, [f"L{i + 1:02d}" for i in range(args.stations)])  # starts meanwhile
    log(f"recording {args.record_seconds:g} s of {args.size} live stream")
    try:
        stream = record_stream(folder, args.record_seconds, width, height)
    except BaseException:
        server.stop()
        raise
    log(f"stream: {len(stream.chunks)} chunks per {stream.period_s:.2f} s loop, "
        f"{stream.bytes_per_s * 8 / 1000:.0f} kbit/s")
    if args.slow_pause == "auto":
        args.slow_pause = overflow_pause(stream)
        args.duration = max(args.duration, args.slow_pause + 1.5 - START_S - args.warmup)
        log(f"the slow viewer freezes for {args.slow_pause:.1f} s; window {args.duration:.1f} s")
    load_avg = [round(x, 2) for x in os.getloadavg()]
    ours, base = asyncio.run(measure(args, folder, stream, server, tokens))
    n_viewers = args.stations * args.viewers + 1
    result: dict[str, Any] = {
        "duration_s": args.duration, "stations": args.stations, "viewers_per_station": args.viewers,
        "size": args.size, "stream_kbit_s": round(stream.bytes_per_s * 8 / 1000),
        "chunks_per_s": round(len(stream.chunks) / stream.period_s, 1), "stall_s": STALL_S,
        "slow_rate_bytes_s": args.slow_rate, "slow_pause_s": args.slow_pause, "load_avg_before": load_avg, "ours": ours,
        "server_cpu_pct_per_station_viewer": round(ours["server_cpu_pct"] / n_viewers, 2),
    }
    rows = []

    def row(label: str, part: dict[str, Any], cls: str) -> None:
        if cls in part:
            c = part[cls]
            rows.append([label, c["viewers"], f"{c['received']}/{c['expected']}", c["skips"], c["stalls"],
                         c["max_gap_s"], c["p50_ms"], c["p95_ms"], c["max_ms"], c["end_lag_ms"]])

    row("ours: normal viewers", ours, "normal")
    row("ours: normal, slow one's station", ours, "slow_station_normal")
    row(f"ours: slow viewer ({args.slow_rate / 1000:g} kB/s)", ours, "slow")
    if base:
        result["baseline"] = base
        row("baseline relay: viewers", base, "normal")
        ours_mb = ours["server_cpu_pct"] / 100 * args.duration / max(ours["delivered_mb"], 1e-9)
        base_mb = base["server_cpu_pct"] / 100 * args.baseline_seconds / max(base["delivered_mb"], 1e-9)
        result["server_cpu_s_per_mb"] = round(ours_mb, 4)
        result["baseline_cpu_s_per_mb"] = round(base_mb, 4)
        result["ratio_cpu_per_mb"] = round(ours_mb / base_mb, 2) if base_mb else None
        result["ratio_p95_latency"] = round(ours["normal"]["p95_ms"] / base["normal"]["p95_ms"], 2)
    print(f"server CPU {ours['server_cpu_pct']} % of one core ({result['server_cpu_pct_per_station_viewer']} % per "
          f"station-viewer); clients: viewers {ours['client_cpu_pct']} %, publishers {ours['publisher_cpu_pct']} % "
          f"(publisher lateness p95 {ours['publisher_late_p95_ms']} ms, longest pause in the replayed stream "
          f"{ours['publisher_max_gap_s']} s)"
          + (f"; baseline relay CPU {base['server_cpu_pct']} %, ratio CPU/MB ours/relay "
             f"{result['ratio_cpu_per_mb']}" if base else ""))
    if ours["errors"] or base.get("errors"):
        print("viewer errors: " + "; ".join(ours["errors"] + base.get("errors", [])))
    report("live_load", ["viewers", "n", "recv/sent", "skips", "stalls", "max gap s", "p50 ms", "p95 ms", "max ms",
                        "lag at end ms"],
           rows, result)


if __name__ == "__main__":
    main()
