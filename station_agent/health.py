"""Station health: cameras (frames arriving, rate, frozen or black picture), microphone (level, silence), disk.

The recorder's capture threads hand every item to `SourceWatch.observe` (via `media.recorder.tap_sources`),
which only keeps the latest picture and sums the sound's energy. `SourceWatch.sample()`, called about once a
second, does the work: it turns the latest picture grey at full resolution, measures its brightness (black: mean
under 12 of 255) and compares it with the first sample of the candidate freeze.

Frozen, as ffmpeg's `freezedetect` filter decides it: the mean absolute difference per pixel, at full resolution,
stays under a noise tolerance of 0.001 of full scale (-60 dB, 0.255 grey levels) for `frozen_s`, always measured
against the first picture of the candidate freeze, so a slow drift adds up and ends it. A live camera on a still
room differs by its sensor noise (a grey level or more per pixel: still well over the tolerance), a stalled
camera or pipeline repeats one decoded picture (0), and an H.264 stream of a still picture has skip-block P-frames
(0) and keyframes that re-encode it almost identically. Averaging pixels (a small thumbnail) would remove the
noise and report a still room as frozen, hence full resolution: one grey conversion, ~0.5 ms at 1920x1080.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from media.sources import AudioBlock, EncodedVideo, RawFrame

from . import station_clock
from .lifecycle import iso

log = logging.getLogger(__name__)

FREEZE_NOISE = 0.001 * 255  # freezedetect's default tolerance (-60 dB), as a mean absolute difference in grey levels
BLACK_MEAN = 12.0
STALE_S = 2.0  # no item for this long: not arriving


def grey(image: np.ndarray) -> np.ndarray:
    """The picture in grey levels at full resolution: no averaging, so sensor noise stays visible."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else np.ascontiguousarray(image)


def picture_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference per pixel (0..255) of two grey pictures; pictures of different sizes differ."""
    if a.shape != b.shape:
        return math.inf
    return float(cv2.norm(a, b, cv2.NORM_L1)) / a.size


def dbfs(mean_square: float) -> float:
    return -120.0 if mean_square <= 1e-12 else max(-120.0, 10.0 * math.log10(mean_square))


SLOW_RATIO = 0.8  # a camera delivering under this share of its requested rate is warned about
RATE_WINDOW_S = 5.0  # ... measured over this long (a one-second count would flicker)


@dataclass
class CameraWatch:
    track: str
    source: str
    fps_requested: float | None = None  # what the camera was asked for (a copied stream: what it says it sends)
    frames: int = 0
    damaged: int = 0
    latest: np.ndarray | None = None
    last_item_t: float | None = None
    # sampled state
    fps: float = 0.0
    frozen_since: float | None = None
    black: bool = False
    difference: float | None = None  # to the first picture of the candidate freeze, at the last sample
    _reference: np.ndarray | None = None  # that first picture, grey
    _counted: int = 0
    _sampled_t: float | None = None
    _history: deque[tuple[float, int]] = field(default_factory=deque)  # (time, frames) of the last samples

    def sample(self, now: float, frozen_s: float) -> dict[str, Any]:
        if self._sampled_t is not None and now > self._sampled_t:
            self.fps = (self.frames - self._counted) / (now - self._sampled_t)
        self._counted, self._sampled_t = self.frames, now
        self._history.append((now, self.frames))
        while now - self._history[0][0] > RATE_WINDOW_S:
            self._history.popleft()
        first_t, first_frames = self._history[0]
        rate = (self.frames - first_frames) / (now - first_t) if now - first_t >= RATE_WINDOW_S - 1.5 else None
        image = self.latest
        if image is not None:
            picture = grey(image)
            self.black = cv2.mean(picture)[0] < BLACK_MEAN
            self.difference = None if self._reference is None else picture_difference(picture, self._reference)
            if self.difference is None or self.difference > FREEZE_NOISE:
                self.frozen_since = None  # it changed: this picture starts the next candidate freeze
                self._reference = picture
            elif self.frozen_since is None:
                self.frozen_since = now
        arriving = self.last_item_t is not None and now - self.last_item_t < STALE_S
        frozen_for = now - self.frozen_since if self.frozen_since is not None else 0.0
        slow = arriving and rate is not None and bool(self.fps_requested) \
            and rate < SLOW_RATIO * (self.fps_requested or 0.0)
        return {"track": self.track, "source": self.source, "state": "recording", "arriving": arriving,
                "frames": self.frames, "damaged_packets": self.damaged, "fps": round(self.fps, 1),
                "fps_delivered": None if rate is None else round(rate, 1), "fps_requested": self.fps_requested,
                "slow": slow, "frozen": frozen_for >= frozen_s, "frozen_for_s": round(frozen_for, 1),
                "black": self.black}


@dataclass
class MicWatch:
    source: str
    camera: int | None = None  # the sound of this camera's RTSP session ("camera:N"), not a microphone of its own
    blocks: int = 0
    last_item_t: float | None = None
    level_dbfs: float | None = None
    quiet_since: float | None = None
    _sum_sq: float = 0.0
    _n: int = 0

    def sample(self, now: float, silence_s: float, silence_dbfs: float, sum_sq: float, n: int) -> dict[str, Any]:
        if n:
            self.level_dbfs = dbfs(sum_sq / n)
            if self.level_dbfs >= silence_dbfs:
                self.quiet_since = None
            elif self.quiet_since is None:
                self.quiet_since = now
        quiet_for = now - self.quiet_since if self.quiet_since is not None else 0.0
        arriving = self.last_item_t is not None and now - self.last_item_t < STALE_S
        return {"source": self.source, "camera": self.camera, "state": "recording", "arriving": arriving,
                "level_dbfs": None if self.level_dbfs is None else round(self.level_dbfs, 1),
                "silent": quiet_for >= silence_s, "silent_for_s": round(quiet_for, 1)}


@dataclass
class SourceWatch:
    """What one recording's sources deliver; fed from the capture threads, sampled from the agent's loop."""

    cameras: dict[str, CameraWatch] = field(default_factory=dict)
    mic: MicWatch | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, track: str, item: Any) -> None:
        now = time.monotonic()
        if isinstance(item, AudioBlock):
            if self.mic is not None:
                samples = item.samples.astype(np.float64, copy=False)
                with self._lock:
                    self.mic._sum_sq += float(np.dot(samples, samples))
                    self.mic._n += samples.size
                    self.mic.blocks += 1
                    self.mic.last_item_t = now
            return
        cam = self.cameras.get(track)
        if cam is not None:
            cam.frames += 1
            cam.last_item_t = now
            if isinstance(item, RawFrame):
                cam.latest = item.image
            elif isinstance(item, EncodedVideo) and item.packet.is_corrupt:
                cam.damaged += 1  # a stream-copied network camera lost packets on the way

    def sample(self, frozen_s: float, silence_s: float, silence_dbfs: float) -> dict[str, Any]:
        now = time.monotonic()
        cameras = [cam.sample(now, frozen_s) for cam in self.cameras.values()]
        mic = None
        if self.mic is not None:
            with self._lock:
                sum_sq, n = self.mic._sum_sq, self.mic._n
                self.mic._sum_sq, self.mic._n = 0.0, 0
            mic = self.mic.sample(now, silence_s, silence_dbfs, sum_sq, n)
        return {"cameras": cameras, "microphone": mic}


def disk_status(path: Path, reserve_bytes: int) -> dict[str, Any]:
    """Free space under `path` against the reserve: `warning` from twice the reserve, `stop` at it."""
    free = shutil.disk_usage(path).free
    return {"path": str(path), "free_mb": round(free / 2**20, 1), "reserve_mb": round(reserve_bytes / 2**20, 1),
            "warning": free < 2 * reserve_bytes, "stop": free < reserve_bytes}


def camera_number(track: str) -> str:
    """"cam2" -> "2": how a technician counts the cameras ([[cameras]] entries, from 0)."""
    return track[3:] if track.startswith("cam") and track[3:].isdigit() else track


def problems(report: dict[str, Any]) -> list[str]:
    """Plain-language problems found in a health report (empty when all is well)."""
    out = []
    for cam in report.get("cameras", []):
        if cam.get("state") != "recording":
            continue
        name = f"{cam['track']} ({cam['source']})"
        if not cam["arriving"]:
            out.append(f"{name}: no frames arriving")
        if cam.get("slow"):
            out.append(f"camera {camera_number(cam['track'])} delivers {cam['fps_delivered']:g} fps of "
                       f"{cam['fps_requested']:g} requested")
        if cam["frozen"]:
            out.append(f"{name}: picture frozen for {cam['frozen_for_s']} s")
        if cam["black"]:
            out.append(f"{name}: picture black")
    mic = report.get("microphone")
    if mic and mic.get("state") == "recording":
        if not mic["arriving"]:
            out.append(f"no sound from camera {mic['camera']}" if mic.get("camera") is not None
                       else f"microphone ({mic['source']}): no sound arriving")
        if mic["silent"]:
            out.append(f"microphone ({mic['source']}): silent for {mic['silent_for_s']} s")
    disk = report.get("disk", {})
    if disk.get("stop"):
        out.append(f"disk: {disk['free_mb']} MB free, under the {disk['reserve_mb']} MB reserve: recording stopped")
    elif disk.get("warning"):
        out.append(f"disk: {disk['free_mb']} MB free, near the {disk['reserve_mb']} MB reserve")
    out.extend(report.get("failures", []))
    return out


class FailureLog:
    """The agent's last failures (each logged too), shown in its health report; called as `fail(message)`."""

    def __init__(self, keep: int = 10) -> None:
        self.keep = keep
        self.recent: list[str] = []

    def __call__(self, message: str) -> None:
        log.error(message)
        self.recent = [*self.recent[-(self.keep - 1):], f"{iso(station_clock.now())} {message}"]
