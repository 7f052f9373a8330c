"""Capture-to-screen latency of the live view, measured in the browser (bench/bench_live_screen.py and
tests/e2e/test_live_screen.py use it).

The synthetic camera lights its flash at every whole second T of the host's monotonic clock: the frame captured at t
is blended toward white by max(0, 1 - |t - T| * fps), so the brightness-weighted centre of the flash frames is T
(media/sources/synthetic.py). An init script (`PROBE_JS`) notes in the page, for every frame a <video> presents,
`requestVideoFrameCallback`'s `expectedDisplayTime` (the page's monotonic clock, ms), the frame's media time and its
mean brightness (drawn into a small canvas inside the callback: the frame being presented), and for every live
WebSocket message carrying video its arrival time and its header's t. `tie_clock` maps the page's clock onto the
host's by bracketing `performance.now()` between two host readings (the narrowest of many tries, ±0.5 ms here).

A flash's on-screen instant is the brightness-weighted mean display time of its frames, and its latency that minus T.
The socket figure of the same flash weights the arrival times of the chunks that carried those frames the same way:
what reached the page's WebSocket, before the player's buffer, the decoder and the compositor.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any

PROBE_JS = r"""
(() => {
  const frames = [];    // [tag, expectedDisplayTime ms, mediaTime s, brightness 0..255]
  const arrivals = [];  // [station/camera, arrival ms, t s] of the messages that carry video
  const events = [];    // [tag, type, ms, currentTime, buffered start]: waiting for data, seeking, a socket opening
  window.__screen = {
    take() { return { frames: frames.splice(0), arrivals: arrivals.splice(0), events: events.splice(0) }; },
  };
  const hasVideo = (bytes) => {   // a moof with a traf of track 1 (the recorder's video track)
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < 16 || view.getUint32(4) !== 0x6d6f6f66) return false;   // "moof"
    const end = Math.min(view.getUint32(0), bytes.byteLength);
    for (let at = 8; at + 8 <= end; at += Math.max(8, view.getUint32(at))) {
      if (view.getUint32(at + 4) === 0x74726166 && at + 28 <= end                 // "traf" holding "tfhd"
          && view.getUint32(at + 12) === 0x74666864 && view.getUint32(at + 20) === 1) return true;
    }
    return false;
  };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      const m = /\/api\/live\/([^/]+)\/([^/]+)\/ws/.exec(String(url));
      if (!m) return;
      events.push([m[1] + ":socket", "open", performance.now()]);   // a player starts
      this.addEventListener("message", (e) => {   // registered before the page's onmessage: runs first
        const now = performance.now();
        if (!(e.data instanceof ArrayBuffer) || e.data.byteLength < 9) return;
        const kind = new Uint8Array(e.data, 0, 1)[0];
        if (kind !== 0x49 && hasVideo(new Uint8Array(e.data, 9))) {
          arrivals.push([m[1] + "/" + m[2], now, new DataView(e.data).getFloat64(1)]);
        }
      });
    }
  };
  const canvas = document.createElement("canvas");
  canvas.width = 32; canvas.height = 18;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const tagOf = (video) => {
    const tile = video.closest(".tile");
    return (tile ? tile.dataset.station : "?") + (video.closest("#big-slot") ? ":big" : ":tile");
  };
  const watch = (video) => {
    for (const type of ["waiting", "seeking", "seeked"]) {
      video.addEventListener(type, () => {
        const b = video.buffered, from = b.length ? b.start(b.length - 1) : null;   // a seek decodes from there
        events.push([tagOf(video), type, performance.now(), video.currentTime, from]);
      });
    }
    const onFrame = (_now, meta) => {
      if (getComputedStyle(video).opacity === "0") {   // presented but out of sight
        video.requestVideoFrameCallback(onFrame);
        return;
      }
      ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
      const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let sum = 0;
      for (let i = 0; i < d.length; i += 4) sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      frames.push([tagOf(video), meta.expectedDisplayTime, meta.mediaTime, sum / (d.length / 4)]);
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  };
  const seen = new WeakSet();
  setInterval(() => {
    for (const v of document.querySelectorAll("video")) if (!seen.has(v)) { seen.add(v); watch(v); }
  }, 50);
})();
"""

FLASH_WEIGHT = 0.15  # a frame this much toward white (of what it could be) belongs to a flash
MATCH_S = 0.025  # a presented frame and a chunk's t this close are the same frame (frames are 40 ms apart)


def tie_clock(page: Any, tries: int = 40) -> tuple[float, float]:
    """(offset s, uncertainty s): host monotonic = performance.now() / 1000 + offset, from the narrowest bracket."""
    best = (0.0, float("inf"))
    for _ in range(tries):
        before = time.monotonic()
        page_ms = page.evaluate("performance.now()")
        after = time.monotonic()
        if (after - before) / 2 < best[1]:
            best = ((before + after) / 2 - page_ms / 1000.0, (after - before) / 2)
    return best


@dataclass
class Flash:
    tag: str  # station:tile or station:big
    T: float  # the whole second of the host's clock at which the camera lit it
    screen_ms: float  # brightness-weighted display time - T
    socket_ms: float | None  # brightness-weighted arrival of its frames' chunks - T (None: not matched)
    frames: int
    media: float  # its brightness-weighted media time: T - media is the recording clock's zero on the host's


@dataclass
class Sample:
    """What the probe collected, with the page's clock tied to the host's."""

    offset: float  # host monotonic = page ms / 1000 + offset
    frames: list[list[Any]] = field(default_factory=list)
    arrivals: list[list[Any]] = field(default_factory=list)
    events: list[list[Any]] = field(default_factory=list)

    def add(self, taken: dict[str, list[list[Any]]]) -> None:
        self.frames += taken["frames"]
        self.arrivals += taken["arrivals"]
        self.events += taken["events"]

    def host(self, page_ms: float) -> float:
        return page_ms / 1000.0 + self.offset


def take(page: Any, sample: Sample) -> None:
    sample.add(page.evaluate("window.__screen.take()"))


def flashes(sample: Sample, tag: str) -> list[Flash]:
    """Every flash one player (tag) showed, in order."""
    rows = sorted((f for f in sample.frames if f[0] == tag), key=lambda f: f[1])
    station = tag.split(":")[0]
    chunks = sorted((a[2], sample.host(a[1])) for a in sample.arrivals if a[0].split("/")[0] == station)
    if not rows or not chunks:
        return []
    times = [t for t, _ in chunks]
    # The recording clock's zero on the host's clock, late by the fastest chunk's trip (tens of ms): enough to tell
    # which whole second a flash belongs to.
    origin = min(at - t for t, at in chunks)
    base = sorted(f[3] for f in rows)[len(rows) // 2]  # the picture's usual brightness (flash frames are few)

    def arrival(media: float) -> float | None:
        i = bisect.bisect_left(times, media)
        near = [j for j in (i - 1, i) if 0 <= j < len(times) and abs(times[j] - media) <= MATCH_S]
        return chunks[min(near, key=lambda j: abs(times[j] - media))][1] if near else None

    out: list[Flash] = []
    burst: list[tuple[float, float, float]] = []  # (weight, display host s, media s)

    def close() -> None:
        total = sum(w for w, _, _ in burst)
        shown = sum(w * d for w, d, _ in burst) / total
        media = sum(w * m for w, _, m in burst) / total
        T = round(media + origin)
        got = [(w, arrival(m)) for w, _, m in burst]
        matched = [(w, a) for w, a in got if a is not None]
        socket = sum(w * a for w, a in matched) / sum(w for w, _ in matched) if matched else None
        out.append(Flash(tag, T, (shown - T) * 1000, None if socket is None else (socket - T) * 1000, len(burst),
                         media))

    for f in rows:
        weight = (f[3] - base) / max(1.0, 255.0 - base)
        if weight < FLASH_WEIGHT:
            continue
        if burst and f[2] - burst[-1][2] > 0.2:  # the next flash (or the same media shown again after a seek)
            close()
            burst = []
        burst.append((weight, sample.host(f[1]), f[2]))
    if burst:
        close()
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(found: list[Flash], sample: Sample | None = None, tags: set[str] | None = None) -> dict[str, Any]:
    """p50/p95/max on screen and at the socket; with the sample, the times a player waited for data."""
    screen = [f.screen_ms for f in found]
    socket = [f.socket_ms for f in found if f.socket_ms is not None]
    out = {"flashes": len(found),
           "p50_ms": round(percentile(screen, 50), 1), "p95_ms": round(percentile(screen, 95), 1),
           "max_ms": round(max(screen, default=float("nan")), 1),
           "socket_p50_ms": round(percentile(socket, 50), 1), "socket_p95_ms": round(percentile(socket, 95), 1),
           "socket_max_ms": round(max(socket, default=float("nan")), 1)}
    if sample is not None:
        out.update(stalls(sample, tags))
    return out


def stalls(sample: Sample, tags: set[str] | None = None) -> dict[str, int]:
    """Seeks (the player jumping to the live edge) and stalls (waiting for data that is not the wait after a seek)."""
    events = sorted((e for e in sample.events if tags is None or e[0] in tags), key=lambda e: e[2])
    seeks = [e for e in events if e[1] == "seeking"]
    last_seek: dict[str, float] = {}
    stalled = 0
    for tag, kind, at, *_ in events:
        if kind == "seeking":
            last_seek[tag] = at
        elif kind == "waiting" and at - last_seek.get(tag, -1e9) > 100:
            stalled += 1
    return {"seeks": len(seeks), "stalls": stalled}


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
VIEWER_SINK = "osce_viewer"


def viewer_sink_env() -> dict[str, str]:
    """The browser's environment with its sound going to a PulseAudio null sink of its own: the enlarged view is
    heard through a real sound server's clock, and the test rooms' sink (`room`, the tests' microphone) stays quiet."""
    import os
    import subprocess

    sinks = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True, check=True).stdout
    if VIEWER_SINK not in sinks.split():
        subprocess.run(["pactl", "load-module", "module-null-sink", f"sink_name={VIEWER_SINK}", "rate=48000"],
                       capture_output=True, check=True)
    return {**os.environ, "PULSE_SINK": VIEWER_SINK}
