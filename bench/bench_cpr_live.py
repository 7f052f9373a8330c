"""Live CPR analysis cost: CPU per minute of 720p25 video for the station's live analyser, against decoding alone.

On the station the live analyser sees the camera's pictures as the capture thread delivers them (BGR, already
decoded), keeps one in every few (10 a second by default), turns it into a 160 px grey picture, computes its
optical flow on a niced thread, and every 2 s re-analyses the series for the rolling figures
(station_agent/cpr_live.py). Here the pictures come from decoding a recording, so the baseline is:

- decode: PyAV decode of the same 720p25 H.264 track to BGR pictures (what a camera source hands over);
- live 10 fps / 25 fps: the analyser's own thread CPU (`LiveCpr.cpu_s`, thread CPU time) over the same
  pictures, fed through `LiveCpr.tap` as the recorder would (paced so that nothing is dropped);
- rolling figures: the last seconds' rate (`current()`, 30 times a minute) and the whole attempt's figures
  (`figures()`, 6 times a minute, as `LiveCpr` does), timed on a 1-minute and a 9-minute series.

Input: 60 s (20 s with --quick) of synthetic chest compressions at 110/min with two pauses, as bench_cpr.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
from bench_cpr import FPS, RATE, SIZE, synthetic_cpr_recording
from common import ProcessCPU, log, median, parse_args, report, workdir

from media.cpr.motion import CellMotion
from media.fragments import ChainedReader
from media.manifest import read_manifest
from station_agent.cpr_live import LiveCpr, rolling_figures

PUBLISH_PER_MIN = 30  # every 2 s: the rate of the last seconds
WHOLE_PER_MIN = 6  # every 10 s: count and fraction of the whole attempt so far


def decode_bgr(folder: Path):  # type: ignore[no-untyped-def]
    files = read_manifest(folder).track_files("cam0")
    with ChainedReader([folder / f.file for f in files]) as raw, av.open(raw, "r", format="mp4") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="bgr24"), float(frame.time)


def decode_only(folder: Path) -> int:
    return sum(1 for _ in decode_bgr(folder))


def live_pass(folder: Path, fps: float) -> LiveCpr:
    live = LiveCpr(lambda _: None, "cam0", 0.0, 0.0, fps=fps, every_s=1e9)  # figures timed separately
    for image, t in decode_bgr(folder):
        live.tap("cam0", SimpleNamespace(image=image, observed_t=t))
        while live._queue.qsize() > 5:  # a real camera is paced by time; here nothing may be dropped
            time.sleep(0.001)
    live.close()
    return live


def long_series(live: LiveCpr, minutes: int) -> LiveCpr:
    """The same analyser holding `minutes` of series (the pass repeated), as near the end of a long attempt."""
    m = live.analyser._flow.motion
    span = m.times[-1] - m.times[0] + (m.times[1] - m.times[0])
    reps = max(1, round(minutes * 60 / span))
    big = LiveCpr(lambda _: None, "cam0", 0.0, 0.0, every_s=1e9)
    big.close()
    big.analyser._flow.motion = CellMotion(m.grid, [t + i * span for i in range(reps) for t in m.times],
                                           m.vy * reps, m.vx * reps)
    return big


def time_figures(live: LiveCpr, repeats: int = 5) -> tuple[float, dict]:
    """CPU seconds per minute of the rolling figures (at this series length), and the figures."""
    now, whole = [], []
    figures: dict = {}
    for _ in range(repeats):
        t0 = time.thread_time()
        result = live.analyser.figures()
        t1 = time.thread_time()
        figures = rolling_figures(live.analyser, result)
        whole.append(t1 - t0)
        now.append(time.thread_time() - t1)
    return median(now) * PUBLISH_PER_MIN + median(whole) * WHOLE_PER_MIN, figures


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    seconds = 20.0 if args.quick else 60.0
    folder = workdir(args, "cpr-live") / "rec"
    synthetic_cpr_recording(folder, seconds)
    per_min = 60.0 / seconds
    decode_cpu, live10, live25, frames10 = [], [], [], 0
    live = None
    for i in range(args.repeats):
        with ProcessCPU() as d:
            frames = decode_only(folder)
        live = live_pass(folder, 10.0)
        fast = live_pass(folder, FPS)
        decode_cpu.append(d.cpu)
        live10.append(live.cpu_s)
        live25.append(fast.cpu_s)
        frames10 = live.frames
        log(f"repeat {i + 1}: decode {d.cpu:.2f} s CPU ({frames} frames), live 10 fps {live.cpu_s:.2f} s "
            f"({live.frames} pictures), 25 fps {fast.cpu_s:.2f} s ({fast.frames})")
        time.sleep(0.5)
    assert live is not None
    fig1, figures = time_figures(long_series(live, 1))
    fig9, _ = time_figures(long_series(live, 9))
    final = live.analyser.figures()
    rows = [
        ["decode to BGR (baseline)", median(decode_cpu) * per_min, 1.0],
        ["live analyser 10 fps: pictures", median(live10) * per_min, median(live10) / median(decode_cpu)],
        ["live analyser 25 fps: pictures", median(live25) * per_min, median(live25) / median(decode_cpu)],
        ["rolling figures, 1 min series", fig1, fig1 / (median(decode_cpu) * per_min)],
        ["rolling figures, 9 min series", fig9, fig9 / (median(decode_cpu) * per_min)],
    ]
    live_total = median(live10) * per_min + fig9
    report("cpr_live", ["step", "cpu_s_per_media_min", "x_decode"], rows, {
        "media_s": seconds, "size": f"{SIZE[0]}x{SIZE[1]}", "fps": FPS, "repeats": args.repeats,
        "decode_cpu_s_per_min": round(median(decode_cpu) * per_min, 3),
        "live10_cpu_s_per_min": round(median(live10) * per_min, 3),
        "live25_cpu_s_per_min": round(median(live25) * per_min, 3),
        "figures_cpu_s_per_min_1min": round(fig1, 3), "figures_cpu_s_per_min_9min": round(fig9, 3),
        "live_total_cpu_s_per_min_worst": round(live_total, 3),
        "live_share_of_one_core": round(live_total / 60.0, 4),
        "pictures_10fps": frames10, "rate_found": final.get("rate_per_min"), "rate_true": RATE,
        "rolling": figures, "estimate_ok": bool(final.get("estimate")) and abs(final["rate_per_min"] - RATE) <= 5})


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
