"""Live view latency: a packet's capture time (the recording clock) to its arrival at a WebSocket viewer.

A real recording (synthetic camera + microphone, 640x360, H.264 zerolatency, AAC) is tapped by the live
publisher, sent to the live fan-out (review_server/live.py, aiohttp, behind the auth test stand-in) and read
by a viewer on the same machine, so both ends read the same monotonic clock. Stages: capture → chunk out of
the live muxer (encode + mux, measured in the recorder) → chunk at the viewer. Baseline, same run: a plain
aiohttp WebSocket echo of messages of the same sizes (round trip), the transport's own floor.

    .venv/bin/python bench/bench_live_latency.py [--quick]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from common import log, parse_args, report, workdir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media import clock  # noqa: E402
from media.live import Chunk, moof_samples  # noqa: E402
from media.recorder import Recorder, RecorderConfig, SourceConfig  # noqa: E402
from review_server.live import create_live_test_app  # noqa: E402
from station_agent.live_publisher import LivePublisher  # noqa: E402

TOKEN = "bench-station-token"
COOKIE = {"osce_session": "bench-observer"}


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


class Served:
    """An aiohttp app on 127.0.0.1 in its own thread and loop (the server side of the measurement)."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.runner = web.AppRunner(app)
            self.loop.run_until_complete(self.runner.setup())
            self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", 0).start())
            self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def viewer(url: str, seconds: float, origin: float) -> list[tuple[bytes, int, int, float]]:
    """(kind, 1 if the chunk holds a video frame, message size, latency ms) per chunk."""
    out = []
    async with aiohttp.ClientSession(cookies=COOKIE) as session, session.ws_connect(url) as ws:
        first_key = False
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            now = clock.now()
            chunk = Chunk.decode(msg.data)
            first_key = first_key or chunk.key
            # The joiner's GOP backlog is old by design; measure from the first key frame after it.
            if chunk.kind != b"I" and first_key:
                moof = chunk.data[:int.from_bytes(chunk.data[:4], "big")]
                video = dict(moof_samples(moof)).get(1, 0) > 0  # track 1 is the video
                out.append((chunk.kind, int(video), len(msg.data), (now - origin - chunk.t) * 1000))
    return out


def live_run(folder: Path, seconds: float) -> tuple[list[tuple[bytes, int, int, float]], list[float]]:
    server = Served(create_live_test_app({TOKEN: "B1"}, {"bench-observer": "observer"}))
    publisher = LivePublisher(server.url, "B1", TOKEN)
    pub = threading.Thread(target=lambda: asyncio.run(publisher.run()), daemon=True)
    pub.start()
    muxed: list[float] = []
    recorder: Recorder | None = None

    def tap(track):  # noqa: ANN001, ANN202 - also time the chunks as they leave the muxer
        muxer = publisher.attach(track)
        muxer.listen(lambda c: muxed.append((clock.now() - recorder.origin - c.t) * 1000) if c.kind != b"I" else None)
        return muxer

    recorder = Recorder(RecorderConfig(out_dir=folder / "rec", videos=[SourceConfig("synthetic")],
                                       audio=SourceConfig("synthetic"), width=640, height=360, station="B1", live=tap))
    recorder.start()
    try:
        time.sleep(max(0.0, recorder.origin - clock.now()) + 2.5)  # warm-up, first GOP
        muxed.clear()
        ws = server.url.replace("http", "ws") + "/api/live/B1/cam0/ws"
        got = asyncio.run(viewer(ws, seconds, recorder.origin))
    finally:
        recorder.stop()
        publisher.stop()
        pub.join(10)
        server.close()
    # The first GOP is the joiner's backlog (up to 2 s old by design): drop everything before the next key.
    keys = [i for i, (kind, _, _, _) in enumerate(got) if kind == b"K"]
    return got[keys[1] if len(keys) > 1 else 0:], muxed


async def echo_run(sizes: list[int]) -> list[float]:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/echo", echo)
    server = Served(app)
    rtts = []
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(server.url + "/echo", max_msg_size=0) as ws:
            for size in sizes:
                payload = bytes(size)
                t0 = clock.now()
                await ws.send_bytes(payload)
                msg = await ws.receive()
                rtts.append((clock.now() - t0) * 1000)
                assert msg.type == aiohttp.WSMsgType.BINARY and len(msg.data) == size, msg.type
    finally:
        server.close()
    return rtts


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    seconds = 8.0 if args.quick else 30.0
    folder = workdir(args, "live-latency")
    log(f"live: recording and viewing for {seconds:g} s")
    got, muxed = live_run(folder, seconds)
    sizes = [size for _, _, size, _ in got]
    log(f"echo baseline: {len(sizes)} messages of the same sizes")
    rtts = asyncio.run(echo_run(sizes))
    all_ms = [ms for _, _, _, ms in got]
    video_ms = [ms for _, video, _, ms in got if video]
    rows = [
        ["capture → muxed chunk (station)", len(muxed), f"{pct(muxed, 50):.1f}", f"{pct(muxed, 95):.1f}"],
        ["capture → viewer, all chunks", len(all_ms), f"{pct(all_ms, 50):.1f}", f"{pct(all_ms, 95):.1f}"],
        ["capture → viewer, video chunks", len(video_ms), f"{pct(video_ms, 50):.1f}", f"{pct(video_ms, 95):.1f}"],
        ["baseline: WS echo round trip", len(rtts), f"{pct(rtts, 50):.2f}", f"{pct(rtts, 95):.2f}"],
    ]
    result = {
        "seconds": seconds, "chunks": len(all_ms),
        "muxed_p50_ms": round(pct(muxed, 50), 1), "muxed_p95_ms": round(pct(muxed, 95), 1),
        "viewer_p50_ms": round(pct(all_ms, 50), 1), "viewer_p95_ms": round(pct(all_ms, 95), 1),
        "video_p50_ms": round(pct(video_ms, 50), 1), "video_p95_ms": round(pct(video_ms, 95), 1),
        "echo_rtt_p50_ms": round(pct(rtts, 50), 2), "echo_rtt_p95_ms": round(pct(rtts, 95), 2),
        "network_part_p50_ms": round(pct(all_ms, 50) - pct(muxed, 50), 1),
    }
    report("live_latency", ["stage", "n", "p50 ms", "p95 ms"], rows, result)


if __name__ == "__main__":
    main()
