"""Live view as the observer sees it: capture → screen latency in headless Chromium on the demo, with and without the
12 × 4 live load, for the grid's tiles and for the enlarged view with sound; the socket figure of the same flashes
beside it; how fast a new viewer's picture starts.

The demo (review_server/demo.py: `osce server run` and three `osce agent run`, synthetic 640x360 cameras flashing at
every whole second of the host's clock, synthetic microphones) runs its first attempt; examiner1 watches /live in
Debian's Chromium and marks beside the enlarged picture. tests/e2e/screen_latency.py measures in the page: every
presented frame's `requestVideoFrameCallback` expectedDisplayTime and brightness, tied to the host's clock. A flash's
latency is its brightness-weighted display time minus the whole second the camera lit it; its socket latency the same
over the arrival of its chunks at the page's WebSocket (the baseline: what the player adds is the difference).
The load is bench_live_load.py's: 12 more stations replaying a recorded 720p25 stream through the same server to
4 viewers each (a second process), started after the unloaded phases. Startup: the page reloaded, from the player's
WebSocket to its first picture, that picture's age, and the seek to the live edge.

    .venv/bin/python bench/bench_live_screen.py [--quick] [--seconds S] [--no-load]

The browser's sound goes to a PulseAudio null sink of its own (`osce_viewer`, made if missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_live_load as load  # noqa: E402
from common import log, report  # noqa: E402

from tests.e2e.screen_latency import (  # noqa: E402
    CHROMIUM_ARGS,
    PROBE_JS,
    Sample,
    flashes,
    percentile,
    summary,
    take,
    tie_clock,
    viewer_sink_env,
)

BIG = "st2"  # the station enlarged with sound
LOAD_STATIONS, LOAD_VIEWERS = 12, 4


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def add_load_stations(db_url: str, codes: list[str]) -> dict[str, str]:
    """The load's stations in the demo's database: station code -> bearer token."""
    from review_server import auth
    from review_server.db import Database
    from review_server.models import Station

    database = Database(db_url)

    def make(s):  # noqa: ANN001, ANN202
        tokens = {}
        for code in codes:
            station = Station(code=code, name=f"Нагрузка {code}")
            s.add(station)
            s.flush()
            tokens[code] = auth.issue_station_token(s, station)[0]
        return tokens

    try:
        return database.run(make)
    finally:
        database.dispose()


class DemoServer:
    """What bench_live_load.run_load needs of a server: its port and CPU (the demo's server process)."""

    def __init__(self, url: str, pid: int) -> None:
        self.url, self.pid = url, pid
        self.port = int(url.rsplit(":", 1)[1])

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / load.CLK_TCK


def load_worker(spec_path: Path) -> None:
    """The 12 × 4 load against the demo's server (this script run again with --load-worker)."""
    spec = pickle.loads(spec_path.read_bytes())
    server = DemoServer(spec["url"], spec["server_pid"])

    async def run() -> dict[str, Any]:
        cookie = await load.login(spec["url"], spec["password"])
        result = await load.run_load(spec["url"], server, spec["tokens"], spec["stream"], LOAD_VIEWERS, 0,
                                     spec["duration"], spec["folder"], cookie, spec["warmup"])
        return load.summarize(result, spec["duration"])

    out = asyncio.run(run())
    spec_path.with_suffix(".json").write_text(json.dumps(out), encoding="utf-8")


def login(page: Any, url: str, password: str) -> None:
    """As examiner1, who marks beside the enlarged picture, as in the video room."""
    page.goto(url + "/login")
    page.fill("input[name=login]", "examiner1")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(url) + r"/(\?lang=ru)?$"))


def only_demo_stations(page: Any, url: str) -> None:
    """The page's station list without the load's stations (the grid lists every station of the server, silent
    ones too; this browser watches the demo's three, the load has its own viewers)."""

    def handle(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        body["stations"] = [s for s in body["stations"] if not s["station"].startswith("L")]
        route.fulfill(response=response, json=body)

    page.context.route(url + "/api/live/streams", handle)


def open_grid(page: Any, url: str) -> None:
    page.goto(url + "/live")
    page.wait_for_function("document.querySelectorAll('.tile video').length >= 3 && [...document.querySelectorAll("
                           "'.tile video')].every(v => v.getVideoPlaybackQuality().totalVideoFrames > 10)",
                           timeout=60000)


# Each player's buffer ahead of its playhead (what arrived but is not shown yet), sampled once a second.
AHEAD_JS = """[...document.querySelectorAll('.tile video')].map(v => [v.closest('.tile').dataset.station,
  v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : null, v.playbackRate])"""


def watch(page: Any, seconds: float, tags: set[str]) -> tuple[dict[str, Any], Sample]:
    page.evaluate("window.__screen.take()")  # what came before the window
    sample = Sample(tie_clock(page)[0])
    ahead, rates = [], []
    stations = {t.split(":")[0] for t in tags}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        take(page, sample)
        for station, buffered, rate in page.evaluate(AHEAD_JS):
            if station in stations and buffered is not None:
                ahead.append(buffered * 1000)
                rates.append(rate)
    found = [f for tag in sorted(tags) for f in flashes(sample, tag)]
    out = summary(found, sample, tags)
    out.update({"ahead_p50_ms": round(percentile(ahead, 50), 1), "ahead_p95_ms": round(percentile(ahead, 95), 1),
                "faster_share": round(sum(r > 1 for r in rates) / max(1, len(rates)), 2)})
    return out, sample


def startup(page: Any, url: str, reloads: int) -> dict[str, Any]:
    """Reload the grid `reloads` times. Per tile: the player's WebSocket opened → its first visible frame, that
    frame's age (display - capture; the recording clock's zero on the host's from the flashes after it), and the
    first seek, to the live edge: how long it took and how much of the GOP it decoded to get there."""
    firsts, ages, seeks, decoded = [], [], [], []
    for _ in range(reloads):
        page.goto(url + "/live")
        page.wait_for_function("document.querySelectorAll('.tile video').length >= 3", timeout=30000)
        page.wait_for_timeout(4000)  # a few flashes after the start
        taken = page.evaluate("window.__screen.take()")
        sample = Sample(tie_clock(page, 20)[0])
        sample.add(taken)
        for tag in {f[0] for f in sample.frames}:
            opened = [e[2] for e in sample.events if e[0] == tag.split(":")[0] + ":socket"]
            first = min((f for f in sample.frames if f[0] == tag), key=lambda f: f[1])
            found = flashes(sample, tag)
            if opened:
                firsts.append(first[1] - min(opened))
            if found:
                zero = sorted(f.T - f.media for f in found)[len(found) // 2]
                ages.append((sample.host(first[1]) - (zero + first[2])) * 1000)
            mine = sorted((e for e in sample.events if e[0] == tag and e[1] in ("seeking", "seeked")),
                          key=lambda e: e[2])
            if len(mine) >= 2 and mine[0][1] == "seeking" and mine[1][1] == "seeked":
                seeks.append(mine[1][2] - mine[0][2])
                if mine[0][4] is not None:
                    decoded.append((mine[0][3] - mine[0][4]) * 1000)
    return {"joins": len(firsts), "first_picture_p50_ms": round(percentile(firsts, 50), 1),
            "first_picture_max_ms": round(max(firsts, default=float("nan")), 1),
            "first_picture_age_p50_ms": round(percentile(ages, 50), 1),
            "first_picture_age_max_ms": round(max(ages, default=float("nan")), 1),
            "edge_seek_p50_ms": round(percentile(seeks, 50), 1), "edge_seek_max_ms": round(max(seeks, default=0), 1),
            "gop_decoded_p50_ms": round(percentile(decoded, 50), 1),
            "gop_decoded_max_ms": round(max(decoded, default=0), 1)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 s per view and condition instead of 60, 3 reloads")
    parser.add_argument("--seconds", type=float, help="measured seconds per view and condition")
    parser.add_argument("--reloads", type=int, help="page reloads for the startup figures (default 6, 3 quick)")
    parser.add_argument("--no-load", action="store_true", help="skip the phases with the 12 × 4 load")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new one under /tmp)")
    parser.add_argument("--load-worker", type=Path, help=argparse.SUPPRESS)  # internal: the load process
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 20.0 if args.quick else 60.0
    if args.reloads is None:
        args.reloads = 3 if args.quick else 6
    return args


def main() -> None:  # noqa: PLR0915 - one linear script
    args = parse_args()
    if args.load_worker is not None:
        load_worker(args.load_worker)
        return
    from playwright.sync_api import sync_playwright

    from review_server.demo import DemoSettings, prepare

    folder = args.workdir or Path(tempfile.mkdtemp(prefix="osce-live-screen-"))
    folder.mkdir(parents=True, exist_ok=True)
    phases = 1 if args.no_load else 2
    stream = None
    if not args.no_load:
        log("recording 20 s of the 720p25 stream the load replays")
        stream = load.record_stream(folder, 20.0, 1280, 720)
    ports = free_ports(7)
    # Long enough a performing phase for everything: the live view streams while a station records.
    performing = int(phases * (2 * args.seconds + 40) + args.reloads * 8 + 120)
    settings = DemoSettings(folder=folder / "demo", port=ports[0], agent_ports=(ports[1], ports[2], ports[3]),
                            marking_ports=(ports[4], ports[5], ports[6]), start_in_s=3, reading_s=5,
                            performing_s=performing, argon2_memory_kib=8192)
    demo = prepare(settings)
    codes = [f"L{i + 1:02d}" for i in range(LOAD_STATIONS)]
    tokens = add_load_stations(f"sqlite:///{demo.folder / 'server' / 'osce.db'}", codes) if stream else {}
    demo.start()
    supervisor = demo.supervise_in_background()
    results: dict[str, Any] = {"seconds": args.seconds}
    samples: dict[str, Sample] = {}  # what the page's probe collected, kept in the workdir to look into
    rows = []
    worker = None
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("OSCE_CHROMIUM", "/usr/bin/chromium"),
                                        args=CHROMIUM_ARGS, env=viewer_sink_env())
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            try:
                context.add_init_script(PROBE_JS)
                page = context.new_page()
                login(page, demo.url, demo.password)
                only_demo_stations(page, demo.url)
                log("waiting for the three stations to play")
                open_grid(page, demo.url)
                page.wait_for_timeout(5000)
                log(f"startup: {args.reloads} page reloads")
                results["startup"] = startup(page, demo.url, args.reloads)
                open_grid(page, demo.url)
                for loaded in ([False] if args.no_load else [False, True]):
                    name = "12x4 load" if loaded else "no load"
                    if loaded:
                        spec = folder / "load.pickle"
                        duration = 2 * args.seconds + 30
                        spec.write_bytes(pickle.dumps({
                            "url": demo.url, "password": demo.password, "tokens": tokens, "stream": stream,
                            "server_pid": demo.processes["server"].pid, "duration": duration, "warmup": 4.0,
                            "folder": folder}))
                        worker = subprocess.Popen([sys.executable, __file__, "--load-worker", str(spec)])
                        log(f"load: {LOAD_STATIONS} stations × {LOAD_VIEWERS} viewers for {duration:g} s; warming up")
                        page.wait_for_timeout((load.START_S + 4.0 + 5.0) * 1000)
                    load_avg = [round(x, 2) for x in os.getloadavg()]
                    log(f"{name}: tiles, {args.seconds:g} s (load average {load_avg})")
                    tiles, sample = watch(page, args.seconds, {"st1:tile", "st2:tile", "st3:tile"})
                    samples[f"{name}: tiles"] = sample
                    page.locator(f'.tile[data-station="{BIG}"] video').click()
                    page.wait_for_function("audioCtx && audioCtx.state === 'running' && current && "
                                           "current.gain && current.gain.gain.value === 1", timeout=10000)
                    page.wait_for_timeout(3000)
                    log(f"{name}: enlarged with sound, {args.seconds:g} s")
                    big, sample = watch(page, args.seconds, {f"{BIG}:big"})
                    samples[f"{name}: enlarged"] = sample
                    page.keyboard.press("Escape")
                    page.wait_for_timeout(2000)
                    key = "load" if loaded else "idle"
                    results[key] = {"tiles": tiles, "big": big, "load_avg": load_avg}
                    for view, fig in (("tiles (3)", tiles), ("enlarged + sound", big)):
                        rows.append([name, view, fig["flashes"], fig["p50_ms"], fig["p95_ms"], fig["max_ms"],
                                     fig["socket_p50_ms"], fig["socket_p95_ms"], fig["ahead_p50_ms"], fig["stalls"],
                                     fig["seeks"]])
            finally:
                context.unroute_all(behavior="ignoreErrors")
                browser.close()
        if worker is not None:
            worker.wait(timeout=120)
            out = (folder / "load.json")
            results["load_fanout"] = json.loads(out.read_text()) if out.exists() else {"error": "no result"}
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        supervisor.set()
        demo.stop()
    (folder / "samples.pickle").write_bytes(pickle.dumps(samples))
    log(f"the probe's raw samples: {folder / 'samples.pickle'} (tests/e2e/screen_latency.py Sample)")
    for key in ("idle", "load"):
        if key in results:
            for view in ("tiles", "big"):
                fig = results[key][view]
                fig["ratio_p95_screen_to_socket"] = round(fig["p95_ms"] / fig["socket_p95_ms"], 2) \
                    if fig["socket_p95_ms"] else None
    s = results["startup"]
    print(f"startup over {s['joins']} joins: first picture {s['first_picture_p50_ms']} ms after the WebSocket opened "
          f"(max {s['first_picture_max_ms']}), {s['first_picture_age_p50_ms']} ms old (max "
          f"{s['first_picture_age_max_ms']}); the seek to the edge took {s['edge_seek_p50_ms']} ms (max "
          f"{s['edge_seek_max_ms']}), decoding {s['gop_decoded_p50_ms']} ms of the GOP (max {s['gop_decoded_max_ms']})")
    if "load_fanout" in results:
        f = results["load_fanout"]
        print(f"load fan-out: server CPU {f.get('server_cpu_pct')} %, load viewers' stalls "
              f"{f.get('normal', {}).get('stalls')}, p95 {f.get('normal', {}).get('p95_ms')} ms")
    report("live_screen", ["condition", "view", "flashes", "p50 ms", "p95 ms", "max ms", "socket p50", "socket p95",
                           "buffer ahead p50", "stalls", "seeks"], rows, results)


if __name__ == "__main__":
    main()
