"""Station health: cameras (frames arriving, rate, frozen or black picture), microphone (level, silence), disk.

The recorder's capture threads hand every item to `SourceWatch.observe` (via `media.recorder.tap_sources`),
which only keeps the latest picture and sums the sound's energy. `SourceWatch.sample()`, called about once a
second, does the work: it shrinks the latest picture to 64x36 grey with OpenCV, compares it with the previous
sample (frozen: no change for `frozen_s`) and measures its brightness (black: mean under 12 of 255).
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from media.sources import AudioBlock, RawFrame

THUMB = (64, 36)
FROZEN_DIFF = 0.5  # mean absolute difference (0..255) under which two samples are "the same picture"
BLACK_MEAN = 12.0
STALE_S = 2.0  # no item for this long: not arriving


def thumbnail(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(grey, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)


def dbfs(mean_square: float) -> float:
    return -120.0 if mean_square <= 1e-12 else max(-120.0, 10.0 * math.log10(mean_square))


@dataclass
class CameraWatch:
    track: str
    source: str
    frames: int = 0
    latest: np.ndarray | None = None
    last_item_t: float | None = None
    # sampled state
    fps: float = 0.0
    frozen_since: float | None = None
    black: bool = False
    _thumb: np.ndarray | None = None
    _counted: int = 0
    _sampled_t: float | None = None

    def sample(self, now: float, frozen_s: float) -> dict[str, Any]:
        if self._sampled_t is not None and now > self._sampled_t:
            self.fps = (self.frames - self._counted) / (now - self._sampled_t)
        self._counted, self._sampled_t = self.frames, now
        image = self.latest
        if image is not None:
            thumb = thumbnail(image)
            self.black = float(thumb.mean()) < BLACK_MEAN
            same = self._thumb is not None and float(np.abs(thumb - self._thumb).mean()) < FROZEN_DIFF
            if not same:
                self.frozen_since = None
            elif self.frozen_since is None:
                self.frozen_since = now
            self._thumb = thumb
        arriving = self.last_item_t is not None and now - self.last_item_t < STALE_S
        frozen_for = now - self.frozen_since if self.frozen_since is not None else 0.0
        return {"track": self.track, "source": self.source, "state": "recording", "arriving": arriving,
                "frames": self.frames, "fps": round(self.fps, 1), "frozen": frozen_for >= frozen_s,
                "frozen_for_s": round(frozen_for, 1), "black": self.black}


@dataclass
class MicWatch:
    source: str
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
        return {"source": self.source, "state": "recording", "arriving": arriving,
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


def problems(report: dict[str, Any]) -> list[str]:
    """Plain-language problems found in a health report (empty when all is well)."""
    out = []
    for cam in report.get("cameras", []):
        if cam.get("state") != "recording":
            continue
        name = f"{cam['track']} ({cam['source']})"
        if not cam["arriving"]:
            out.append(f"{name}: no frames arriving")
        if cam["frozen"]:
            out.append(f"{name}: picture frozen for {cam['frozen_for_s']} s")
        if cam["black"]:
            out.append(f"{name}: picture black")
    mic = report.get("microphone")
    if mic and mic.get("state") == "recording":
        if not mic["arriving"]:
            out.append(f"microphone ({mic['source']}): no sound arriving")
        if mic["silent"]:
            out.append(f"microphone ({mic['source']}): silent for {mic['silent_for_s']} s")
    disk = report.get("disk", {})
    if disk.get("stop"):
        out.append(f"disk: {disk['free_mb']} MB free, under the {disk['reserve_mb']} MB reserve: recording stopped")
    elif disk.get("warning"):
        out.append(f"disk: {disk['free_mb']} MB free, near the {disk['reserve_mb']} MB reserve")
    out.extend(report.get("failures", []))
    return out
