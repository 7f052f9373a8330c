"""Chest-compression figures from video: a vertical motion signal, its cycles, pauses and confidence.

Each frame is turned into a small grey picture (`WIDTH` px wide) and dense optical flow
(Farneback) against the previous one; the flow is averaged per cell of a `CELL` px grid, so a
frame becomes a few dozen numbers (vertical and horizontal velocity per cell). Everything
after that works on these series, which is why the live analyser and the whole-recording
function share one implementation (`analyse_series`):

1. the series are put on a uniform 25 Hz grid; the camera's own motion (median of the frame's
   border cells) is taken off every cell, then all are band-passed (0.7–3.5 Hz, zero phase);
2. the region of interest is the cell with the strongest band energy plus the cells whose
   signal follows it (|correlation| ≥ 0.5), averaged with the sign of their correlation; or a
   region given by the caller (`roi=(x, y, w, h)` as fractions of the frame);
3. per 5 s window (1 s steps): spectral peak prominence (periodicity), ROI energy, and the
   energy of the frame border relative to the ROI (a moving camera moves the border too);
   a window is *confident* when periodic, above the noise floor and the camera is still;
4. compressions are cycles of the ROI velocity (a Schmitt trigger at ±30 % of the typical
   amplitude) in confident windows; a compression's time is the start of its down stroke;
5. pauses are gaps between compressions longer than the typical cycle by ≥ 1 s; a gap during
   which the view is not usable (camera moving) is reported as unknown, not as a pause;
6. rates leave out intervals more than 10 % off the median (filter onset after a pause).

Known limit: a view blocked by something static *while* compressions go on reads as a pause; a
view blocked or a camera pointed elsewhere for the whole task gives no estimate.

When nothing periodic and steady is found the result is ``{"estimate": None, "reason": ...}``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

WIDTH = 160  # analysis width in pixels
CELL = 16  # grid cell size in analysis pixels
FS = 25.0  # uniform analysis rate (Hz)
BAND = (0.7, 3.5)  # compression band (Hz): 42–210 per minute
WINDOW_S = 5.0
STEP_S = 1.0
MIN_PAUSE_S = 1.0
NOISE_FLOOR = 2.0  # px/s RMS at analysis scale: below it nothing moves
MIN_PROMINENCE = 0.45
MAX_BORDER_RATIO = 0.35
MIN_CONFIDENCE = 0.5
MIN_RUN = 3  # compressions in a row; fewer are noise
MIN_CYCLE = 10  # no estimate without at least one run this long (a CPR cycle is 30)
MIN_COVERAGE = 0.8  # below it, no compression fraction


@dataclass
class CellMotion:
    """Per-frame motion series: times (s) and per-cell mean flow in px/frame (vy down-positive)."""

    grid: tuple[int, int] = (0, 0)  # rows, cols
    times: list[float] = field(default_factory=list)
    vy: list[np.ndarray] = field(default_factory=list)
    vx: list[np.ndarray] = field(default_factory=list)


class FlowGrid:
    """Turns pictures into per-cell optical flow; one instance per video stream."""

    def __init__(self) -> None:
        self._prev: np.ndarray | None = None
        self._prev_t = 0.0
        self.motion = CellMotion()

    @staticmethod
    def small_grey(image: np.ndarray) -> np.ndarray:
        """A BGR or grey picture as a `WIDTH`-wide grey picture with its brightness normalised."""
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        h, w = grey.shape
        size = (WIDTH, max(CELL, round(h * WIDTH / w)))
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA) if w != WIDTH else grey
        mean = float(small.mean())
        return cv2.convertScaleAbs(small, alpha=128.0 / max(mean, 1.0))

    def feed(self, image: np.ndarray, t: float) -> None:
        """One picture captured at recording time t (s); `image` may already be `small_grey`."""
        small = image if image.ndim == 2 and image.shape[1] == WIDTH else self.small_grey(image)
        if self._prev is not None and small.shape == self._prev.shape and t > self._prev_t:
            flow = cv2.calcOpticalFlowFarneback(self._prev, small, None, 0.5, 2, 9, 2, 5, 1.1, 0)
            rows, cols = small.shape[0] // CELL, small.shape[1] // CELL
            cells = flow[: rows * CELL, : cols * CELL].reshape(rows, CELL, cols, CELL, 2).mean(axis=(1, 3))
            self.motion.grid = (rows, cols)
            self.motion.times.append(t)
            self.motion.vy.append(cells[..., 1].ravel().astype(np.float32))
            self.motion.vx.append(cells[..., 0].ravel().astype(np.float32))
        self._prev, self._prev_t = small, t


# -- the series analysis -----------------------------------------------------------------------


def _bandpass(x: np.ndarray, fs: float, lo: float, hi: float) -> np.ndarray:
    """Zero-phase FFT band-pass of the columns of x, with raised-cosine edges."""
    n = x.shape[0]
    nfft = 1 << int(np.ceil(np.log2(max(2 * n, 16))))
    f = np.fft.rfftfreq(nfft, 1.0 / fs)
    gain = np.clip((f - lo * 0.6) / (lo * 0.4), 0, 1) * np.clip((hi * 1.4 - f) / (hi * 0.4), 0, 1)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    spec = np.fft.rfft(x - x.mean(axis=0), nfft, axis=0) * gain[:, None]
    return np.fft.irfft(spec, nfft, axis=0)[:n]


def _moving_rms(x: np.ndarray, width: int) -> np.ndarray:
    kernel = np.ones(max(1, width)) / max(1, width)
    if x.ndim == 1:
        return np.sqrt(np.convolve(x * x, kernel, mode="same"))
    return np.sqrt(np.stack([np.convolve(c * c, kernel, mode="same") for c in x.T], axis=1))


def _border_cells(rows: int, cols: int) -> np.ndarray:
    mask = np.zeros((rows, cols), bool)
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = True
    return mask.ravel()


def _roi_cells(rows: int, cols: int, roi: tuple[float, float, float, float]) -> np.ndarray:
    x, y, w, h = roi
    cx = (np.arange(cols) + 0.5) / cols
    cy = (np.arange(rows) + 0.5) / rows
    inside = ((cy[:, None] >= y) & (cy[:, None] <= y + h)) & ((cx[None, :] >= x) & (cx[None, :] <= x + w))
    return inside.ravel()


def _roi_signal(bp: np.ndarray, given: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The ROI's velocity signal and the mask of its cells."""
    energy = (bp * bp).mean(axis=0)
    candidates = np.flatnonzero(given) if given is not None and given.any() else np.arange(bp.shape[1])
    best = candidates[np.argmax(energy[candidates])]
    ref = bp[:, best]
    norm = np.sqrt((bp * bp).sum(axis=0) * (ref * ref).sum()) + 1e-12
    corr = (bp * ref[:, None]).sum(axis=0) / norm
    chosen = (np.abs(corr) >= 0.5) & (energy >= 0.2 * energy[best])
    if given is not None and given.any():
        chosen &= given
    chosen[best] = True
    weights = np.sign(corr) * chosen
    return (bp * weights).sum(axis=1) / chosen.sum(), chosen


def _windows(signal: np.ndarray, border_env: np.ndarray, fs: float) -> dict[str, np.ndarray]:
    """Per 5 s window (1 s steps): centre index, spectral rate, prominence, ROI level, border ratio."""
    length, step = int(WINDOW_S * fs), int(STEP_S * fs)
    if signal.size < length:
        return {k: np.zeros(0) for k in ("centre", "rate", "prominence", "level", "border")}
    starts = np.arange(0, signal.size - length + 1, step)
    frames = np.stack([signal[s : s + length] for s in starts]) * np.hanning(length)
    nfft = 1024
    power = np.abs(np.fft.rfft(frames, nfft, axis=1)) ** 2
    f = np.fft.rfftfreq(nfft, 1.0 / fs)
    band = (f >= 0.5) & (f <= 4.5)
    search = (f >= 0.9) & (f <= 3.2)
    peak = np.argmax(np.where(search, power, 0), axis=1)
    fp = f[peak]
    near = (np.abs(f[None, :] - fp[:, None]) <= 0.3) | (np.abs(f[None, :] - 2 * fp[:, None]) <= 0.3)
    prominence = (power * (near & band)).sum(axis=1) / ((power * band).sum(axis=1) + 1e-12)
    centre = starts + length // 2
    level = np.array([np.sqrt(np.mean(signal[s : s + length] ** 2)) for s in starts])
    border = np.array([np.median(border_env[s : s + length]) for s in starts]) / (level + 1e-9)
    return {"centre": centre, "rate": fp * 60.0, "prominence": prominence, "level": level, "border": border}


def _cycles(signal: np.ndarray, ok: np.ndarray, threshold: float, fs: float) -> list[float]:
    """Times (s from the series start) where a cycle's down stroke begins: the upward zero crossing
    before the signal passes +threshold, counted once per excursion to -threshold and back."""
    times: list[float] = []
    armed = True
    last_cross: float | None = None
    for i in range(1, signal.size):
        a, b = signal[i - 1], signal[i]
        if a < 0 <= b:
            last_cross = (i - 1) + (-a / (b - a))
        if armed and b > threshold and last_cross is not None and ok[i]:
            times.append(last_cross / fs)
            armed = False
        elif not armed and b < -threshold:
            armed = True
    return times


def analyse_series(motion: CellMotion, start: float = 0.0,
                   roi: tuple[float, float, float, float] | None = None) -> dict[str, Any]:
    """CPR figures from per-cell motion series (see the module doc); times are recording seconds."""
    rows, cols = motion.grid
    if len(motion.times) < int(WINDOW_S * FS) or rows < 3 or cols < 3:
        return {"estimate": None, "reason": "too_short", "confidence": 0.0}
    t = np.asarray(motion.times, dtype=np.float64)
    dt = np.diff(t, prepend=t[0] - np.median(np.diff(t)))
    per_s = 1.0 / np.maximum(dt, 1e-3)[:, None]
    vy = np.asarray(motion.vy, dtype=np.float64) * per_s  # px/s
    border = _border_cells(rows, cols)
    pan = np.median(np.asarray(motion.vx, dtype=np.float64)[:, border] * per_s, axis=1)
    grid_t = np.arange(t[0], t[-1], 1.0 / FS)
    vy = np.stack([np.interp(grid_t, t, c) for c in vy.T], axis=1)
    tilt = np.median(vy[:, border], axis=1)  # the frame's own motion: the camera's
    bp = _bandpass(np.column_stack([vy - tilt[:, None], tilt, np.interp(grid_t, t, pan)]), FS, *BAND)
    camera = np.hypot(bp[:, -2], bp[:, -1])
    given = _roi_cells(rows, cols, roi) if roi is not None else None
    signal, chosen = _roi_signal(bp[:, :-2], given)
    w = _windows(signal, _moving_rms(camera, int(round(FS))), FS)
    if w["centre"].size == 0:
        return {"estimate": None, "reason": "too_short", "confidence": 0.0}
    periodic = np.clip((w["prominence"] - MIN_PROMINENCE + 0.2) / 0.4, 0, 1)
    steady = np.clip((2 * MAX_BORDER_RATIO - w["border"]) / MAX_BORDER_RATIO, 0, 1)
    moving = w["level"] > NOISE_FLOOR
    conf = periodic * steady * moving
    confident = conf >= MIN_CONFIDENCE
    if not confident.any():
        reason = "no_motion" if not moving.any() else "camera_moving" if np.median(steady) < 0.5 else "not_periodic"
        return {"estimate": None, "reason": reason, "confidence": round(float(conf.max()), 2)}
    # A sample is usable for counting if its nearest window is confident; unknown if the camera moved.
    idx = np.clip(np.round((np.arange(signal.size) - w["centre"][0]) / (STEP_S * FS)).astype(int), 0,
                  w["centre"].size - 1)
    typical = np.percentile(np.abs(signal[confident[idx]]), 95)
    events = _cycles(signal, confident[idx], 0.3 * typical, FS)
    comp = grid_t[0] + np.asarray(events)
    unknown = (steady[idx] < 0.5) & moving[idx]
    return _figures(comp, grid_t, unknown, w, conf, start, chosen, (rows, cols))


def _rate(intervals: np.ndarray) -> float:
    """Compressions per minute from intervals within a cycle, leaving out those 10 % off the median
    (the first interval after a pause is distorted by the band-pass filter's onset)."""
    med = float(np.median(intervals))
    keep = intervals[np.abs(intervals - med) <= 0.10 * med]
    return round(float(60.0 * keep.size / keep.sum()), 1)


def _figures(comp: np.ndarray, grid_t: np.ndarray, unknown: np.ndarray, w: dict[str, np.ndarray],
             conf: np.ndarray, start: float, chosen: np.ndarray, grid: tuple[int, int]) -> dict[str, Any]:
    runs = [comp]
    if comp.size >= 2:  # a compression is one of a run of at least MIN_RUN, or noise
        period = float(np.median(np.diff(comp)))
        runs = np.split(comp, np.flatnonzero(np.diff(comp) >= period + MIN_PAUSE_S) + 1)
        comp = np.concatenate([r for r in runs if r.size >= MIN_RUN] or [np.zeros(0)])
    if comp.size < MIN_CYCLE or max(r.size for r in runs) < MIN_CYCLE:
        return {"estimate": None, "reason": "too_few_compressions", "confidence": round(float(conf.max()), 2)}
    gaps = np.diff(comp)
    period = float(np.median(gaps))
    in_run = gaps < period + MIN_PAUSE_S
    pauses: list[dict[str, Any]] = []
    unknown_spans: list[dict[str, Any]] = []
    for i in np.flatnonzero(~in_run):
        p0, p1 = comp[i] + period, comp[i + 1]
        span = (grid_t >= p0) & (grid_t < p1)
        item = {"start": round(float(p0), 2), "length": round(float(p1 - p0), 2)}
        (unknown_spans if unknown[span].mean() > 0.2 else pauses).append(item)
    end = comp[-1] + period
    span = end - comp[0]
    total = span - sum(u["length"] for u in unknown_spans)
    coverage = total / span
    # Unknown time before the first compression (camera moving): its time cannot be told.
    before = (grid_t >= start) & (grid_t < comp[0])
    first_known = not unknown[before].any() and grid_t[0] <= start + 1.0
    hands_off = sum(p["length"] for p in pauses)
    rate = _rate(gaps[in_run])
    centres = grid_t[0] + w["centre"] / FS
    series = []
    for c, k in zip(centres, conf, strict=True):
        sel = (comp >= c - WINDOW_S / 2) & (comp < c + WINDOW_S / 2)
        g = np.diff(comp[sel])
        g = g[g < period + MIN_PAUSE_S]
        value = _rate(g) if g.size >= 3 and k >= MIN_CONFIDENCE else None
        series.append({"t": round(float(c), 2), "rate": value, "confidence": round(float(k), 2)})
    active = conf[conf >= MIN_CONFIDENCE]
    rows, cols = grid
    ys, xs = np.divmod(np.flatnonzero(chosen), cols)
    return {
        "estimate": True,
        "confidence": round(float(np.median(active) * min(1.0, coverage)), 2),
        "coverage": round(float(coverage), 3),  # share of the compression span where the view was usable
        "compressions": int(comp.size),  # counted in the usable time: a lower bound when coverage < 1
        "rate_per_min": round(float(rate), 1),
        "rate_series": series,
        "pauses": pauses,
        "hands_off_s": round(float(hands_off), 2),
        "unknown_intervals": unknown_spans,
        "first_compression_s": round(float(comp[0]), 2),
        "last_compression_end_s": round(float(end), 2),
        "time_to_first_compression_s": round(float(comp[0] - start), 2) if first_known else None,
        "compression_fraction": round(float((total - hands_off) / total), 3) if coverage >= MIN_COVERAGE else None,
        "compression_times": [round(float(x), 3) for x in comp],
        "roi": [round(float(v), 3) for v in (xs.min() / cols, ys.min() / rows,
                                              (xs.max() + 1 - xs.min()) / cols, (ys.max() + 1 - ys.min()) / rows)],
    }


# -- live and recorded -------------------------------------------------------------------------


class LiveCprAnalyser:
    """Feed frames as they arrive (live view); ask for rolling figures at any time.

    Keeps at most `keep_s` seconds of cell series (a few KB per second); `figures()` re-analyses
    them (a few ms), `current()` gives the rate of the last window only.
    """

    def __init__(self, start: float = 0.0, keep_s: float = 900.0,
                 roi: tuple[float, float, float, float] | None = None) -> None:
        self.start, self.keep_s, self.roi = start, keep_s, roi
        self._flow = FlowGrid()
        self._lock = threading.Lock()

    def feed(self, image: np.ndarray, t: float) -> None:
        small = FlowGrid.small_grey(image)  # outside the lock: the costly part besides the flow
        with self._lock:
            self._flow.feed(small, t)
            m = self._flow.motion
            if m.times and m.times[-1] - m.times[0] > self.keep_s * 1.1:
                cut = int(np.searchsorted(m.times, m.times[-1] - self.keep_s))
                del m.times[:cut], m.vy[:cut], m.vx[:cut]

    def _snapshot(self, seconds: float | None = None) -> CellMotion:
        with self._lock:
            m = self._flow.motion
            n = len(m.times) if seconds is None else int(seconds * FS)
            return CellMotion(m.grid, m.times[-n:], m.vy[-n:], m.vx[-n:])

    def figures(self) -> dict[str, Any]:
        return analyse_series(self._snapshot(), self.start, self.roi)

    def current(self) -> dict[str, Any]:
        """Now: {"t", "rate" over the last 5 s (None: no estimate or hands off), "hands_off_s", "confidence"}."""
        recent = self._snapshot(4 * WINDOW_S)
        now = recent.times[-1] if recent.times else None
        result = analyse_series(recent, self.start, self.roi)
        if not result.get("estimate") or now is None:
            return {"t": now, "rate": None, "hands_off_s": None, "confidence": result["confidence"]}
        comp = np.asarray(result["compression_times"])
        period = float(np.median(np.diff(comp)))
        hands_off = max(0.0, now - (comp[-1] + period))
        last = np.diff(comp[comp >= now - WINDOW_S])
        rate = _rate(last) if hands_off < MIN_PAUSE_S and last.size >= 3 else None
        return {"t": round(now, 2), "rate": rate, "hands_off_s": round(hands_off, 2),
                "confidence": result["rate_series"][-1]["confidence"]}


class LiveTap:
    """Feeds a `LiveCprAnalyser` from a running recorder's camera on its own thread.

    ``tap_sources(recorder, tap)`` hands every captured item to `tap(track, item)` on the capture
    thread; this keeps only a reference in a bounded queue (dropping frames when the analysis falls
    behind, counted in `dropped`). Times are the shared clock minus `origin` (the recording's zero).
    Cameras recorded by stream copy deliver packets, not pictures, and are not analysed here.
    """

    def __init__(self, analyser: LiveCprAnalyser, origin: float, track: str = "cam0") -> None:
        self.analyser, self.origin, self.track = analyser, origin, track
        self.dropped = 0
        self._queue: queue.Queue[tuple[np.ndarray, float] | None] = queue.Queue(maxsize=50)
        self._thread = threading.Thread(target=self._run, name=f"cpr-{track}", daemon=True)
        self._thread.start()

    def __call__(self, track: str, item: Any) -> None:
        image = getattr(item, "image", None)
        if track != self.track or image is None:
            return
        try:
            self._queue.put_nowait((image, item.observed_t - self.origin))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while (entry := self._queue.get()) is not None:
            try:
                self.analyser.feed(*entry)
            finally:
                self._queue.task_done()

    def wait_idle(self) -> None:
        """Until every queued picture is analysed."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


def decode_grey(folder: Path, track: str = "cam0") -> Iterator[tuple[np.ndarray, float]]:
    """A recording's track as (small grey picture, recording time in s), decoded with PyAV."""
    import av

    from media.fragments import ChainedReader
    from media.manifest import ManifestError, read_manifest

    folder = Path(folder)
    files = read_manifest(folder).track_files(track)
    if not files or files[0].kind != "init":
        raise FileNotFoundError(f"{folder}: track {track} has no init file")
    with ChainedReader([folder / f.file for f in files]) as raw, av.open(raw, "r", format="mp4") as container:
        if not container.streams.video:
            raise ManifestError(f"{folder}: track {track} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            height = max(CELL, round(frame.height * WIDTH / frame.width))
            small = frame.reformat(width=WIDTH, height=height, format="gray", interpolation="AREA").to_ndarray()
            yield FlowGrid.small_grey(small), float(frame.time)


def analyse_recording(folder: Path, track: str = "cam0", start: float = 0.0,
                      roi: tuple[float, float, float, float] | None = None,
                      progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Whole-recording figures for one camera track; `progress(t)` is called every 10 s of media."""
    flow = FlowGrid()
    next_report = 10.0
    for grey, t in decode_grey(folder, track):
        flow.feed(grey, t)
        if progress is not None and t >= next_report:
            progress(t)
            next_report += 10.0
    result = analyse_series(flow.motion, start, roi)
    result.update({"track": track, "start_s": start, "frames": len(flow.motion.times) + 1})
    return result


# -- synthetic footage (tests, benchmark, demo) ------------------------------------------------


@dataclass
class SyntheticChest:
    """A textured "chest" moving down and up with a compression waveform, on a textured background.

    `cycles` are the start times (s) of compressions at `rate` per minute; optional Gaussian noise,
    a brightness ramp (factor from 1 - ramp to 1 + ramp over `duration`), an occluding grey
    rectangle over part of the chest, and a globally shaking camera.
    """

    size: tuple[int, int] = (320, 240)
    fps: float = 25.0
    duration: float = 30.0
    cycles: list[float] = field(default_factory=list)
    rate: float = 100.0
    amplitude: float = 0.05  # peak-to-peak travel as a fraction of the frame height
    noise: float = 0.0
    ramp: float = 0.0
    occlude: float = 0.0  # fraction of the chest's width covered
    shake: float = 0.0  # camera shake amplitude as a fraction of the frame height
    seed: int = 0

    @staticmethod
    def schedule(rate: float, runs: list[tuple[float, float]], jitter: float = 0.0, seed: int = 0) -> list[float]:
        """Cycle starts filling each (start, end) run with whole cycles; `jitter` is the relative
        standard deviation of each interval (a human rescuer is not a metronome)."""
        period = 60.0 / rate
        rng = np.random.default_rng(seed)
        starts = []
        for s, e in runs:
            t = s
            while t + period <= e + 1e-9:
                starts.append(t)
                t += period * (1 + jitter * float(np.clip(rng.standard_normal(), -2, 2)))
        return starts

    def depth(self, t: float) -> float:
        """Downward displacement (0..1) at time t: a fast 40 % down stroke, a slower recoil."""
        period = 60.0 / self.rate
        i = int(np.searchsorted(self.cycles, t, side="right")) - 1
        if i < 0 or t - self.cycles[i] >= period:
            return 0.0
        phase = (t - self.cycles[i]) / period
        return float(np.sin(np.pi * phase / 0.8) if phase < 0.4 else np.sin(np.pi * (0.5 + (phase - 0.4) / 1.2)))

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        w, h = self.size
        rng = np.random.default_rng(self.seed)
        texture = cv2.GaussianBlur(rng.integers(0, 255, (h + 40, w + 40), dtype=np.uint8), (0, 0), 2.0)
        background = cv2.cvtColor(texture, cv2.COLOR_GRAY2BGR)
        chest = cv2.GaussianBlur(rng.integers(0, 255, (h // 3, w // 3, 3), dtype=np.uint8), (0, 0), 1.5)
        x0, y0 = w // 3, h // 3
        for n in range(int(self.duration * self.fps)):
            t = n / self.fps
            frame = background[20 : 20 + h, 20 : 20 + w].copy()
            dy = self.depth(t) * self.amplitude * h
            m = np.array([[1, 0, x0], [0, 1, y0 + dy]], dtype=np.float32)
            mask = np.zeros((h, w), np.uint8)
            mask[int(y0 + dy) + 1 : int(y0 + dy) + chest.shape[0] - 1, x0 + 1 : x0 + chest.shape[1] - 1] = 1
            moved = cv2.warpAffine(chest, m, (w, h))
            frame[mask > 0] = moved[mask > 0]
            if self.occlude:
                cv2.rectangle(frame, (x0 - 10, y0 - 20), (x0 + int(self.occlude * chest.shape[1]), y0 + h // 2),
                              (90, 90, 90), -1)
            if self.shake:
                sx, sy = rng.normal(0, self.shake * h, 2)
                frame = cv2.warpAffine(frame, np.array([[1, 0, sx], [0, 1, sy]], dtype=np.float32), (w, h),
                                       borderMode=cv2.BORDER_REFLECT)
            if self.ramp:
                frame = cv2.convertScaleAbs(frame, alpha=1 - self.ramp + 2 * self.ramp * t / self.duration)
            if self.noise:
                noise = rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(self.noise)
                frame = cv2.add(frame, noise, dtype=cv2.CV_8U)
            yield frame, t

    def record(self, folder: Path, track: str = "cam0") -> Path:
        """Write the footage as a recording folder (manifest + fMP4 fragments) through media.track."""
        from media.manifest import ManifestWriter
        from media.track import EncodeSettings, Track

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        w, h = self.size
        manifest = ManifestWriter(folder, {
            "recording_id": folder.name, "station": "synthetic-cpr", "started_wall": "2026-01-01T00:00:00Z",
            "fragment_s": 2.0, "tracks": [{"id": track, "source": "synthetic-cpr",
                                           "video": {"codec": "h264", "width": w, "height": h, "fps": self.fps},
                                           "audio": None}]})
        out = Track(folder, track, manifest, EncodeSettings(), w, h, self.fps, None, with_audio=False)
        for frame, t in self.frames():
            out.add_frame(frame, t)
        out.close()
        manifest.end(self.duration, "completed", {"frames": out.frames})
        manifest.close()
        return folder
