"""Synthetic camera and microphone: one scene seen by two imperfect devices, paced in real time.

The scene flashes white and beeps (1 kHz, 100 ms) at the same true instant T, every whole
second of the shared clock. Each device samples the scene on its own clock, which runs fast
or slow by `skew_ppm`; each delivery is late by a random 0..2*`jitter_ms` (so ±jitter around
its mean) plus a fixed `latency_ms`. A camera catches the flash the way a real one catches a
flash one frame long: the frame captured at t is blended toward white by
max(0, 1 - |t - T| / frame interval), so the brightness-weighted centre of the flash frames
is T exactly, and a checker can place it to a fraction of a frame.

Spec string: ``synthetic:skew_ppm=100,jitter_ms=5,latency_ms=0,seed=1,label=Станция 1``.
Faults for health checks: ``freeze_after_s=N`` (camera: the picture stops changing, frames still
arrive) and ``mute_after_s=N`` (microphone: digital silence), counted from `open()`; with
``freeze_for_s=D`` / ``mute_for_s=D`` the fault ends after D seconds (default: never).

Chest compressions (the CPR station's tests and demo): ``cpr_rate=110`` makes the camera hold still and show
a textured "chest" in the middle moving down and up at that rate per minute, from ``cpr_after_s`` (default 0)
after `open()`, in cycles of ``cpr_cycle`` compressions (default 30) separated by ``cpr_pause_s`` seconds
of stillness (default 0: no pauses). It does not flash then (``flash=1`` to flash anyway); ``flash=0``
turns the flash off in any mode.

A real camera's picture is never still: ``noise=2`` (default 0: none) adds sensor noise, Gaussian with that sigma
in grey levels per pixel and channel, new in every frame, seeded by ``seed``. ``still=1`` holds the test pattern
instead of scrolling it (an empty room; no flash unless ``flash=1``). A frozen fault repeats one frame, noise and
all, bit for bit, as a stalled pipeline does.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

from media import clock
from media.sources.base import AudioBlock, RawFrame, SourceError

_Samples = TypeVar("_Samples", float, np.ndarray)  # one sample number, or an array of them

BEEP_HZ = 1000.0
BEEP_S = 0.100
FLASH_PERIOD_S = 1.0


@dataclass
class Imperfection:
    skew_ppm: float = 0.0
    jitter_ms: float = 0.0
    latency_ms: float = 0.0
    seed: int = 0


def parse_params(text: str, allowed: set[str]) -> dict[str, str]:
    """`a=1,b=2` -> {'a': '1', 'b': '2'}; unknown keys are an error that names them."""
    params: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise SourceError(f"synthetic source parameter {part!r} must look like key=value")
        if key not in allowed:
            raise SourceError(f"synthetic source: unknown parameter {key!r} (known: {', '.join(sorted(allowed))})")
        params[key] = value
    return params


def _imperfection(params: dict[str, str]) -> Imperfection:
    try:
        return Imperfection(
            skew_ppm=float(params.get("skew_ppm", 0)),
            jitter_ms=float(params.get("jitter_ms", 0)),
            latency_ms=float(params.get("latency_ms", 0)),
            seed=int(params.get("seed", 0)),
        )
    except ValueError as exc:
        raise SourceError(f"synthetic source: bad number in parameters: {exc}") from exc


IMPERFECTION_KEYS = {"skew_ppm", "jitter_ms", "latency_ms", "seed"}


def _in_fault(since_open: float, after: float | None, lasts: float | None) -> bool:
    return after is not None and since_open >= after and (lasts is None or since_open < after + lasts)


def _optional_number(params: dict[str, str], key: str) -> float | None:
    """A number parameter (a fault time, the noise sigma), or None when not given."""
    if key not in params:
        return None
    try:
        return float(params[key])
    except ValueError as exc:
        raise SourceError(f"synthetic source: bad number for {key}: {exc}") from exc


class _Pacer:
    """Delivers item k of a device whose clock runs at (1 + skew) of the shared clock."""

    def __init__(self, period_s: float, imp: Imperfection) -> None:
        self.true_period = period_s / (1.0 + imp.skew_ppm * 1e-6)
        self.imp = imp
        self.rng = random.Random(imp.seed)
        self.stop = threading.Event()
        self.start = 0.0
        self.last_delivery = 0.0

    def begin(self) -> None:
        self.stop.clear()
        # Start on a fresh period so that the first items are not bunched.
        self.start = clock.now()
        self.last_delivery = self.start

    def capture_time(self, k: _Samples) -> _Samples:
        return self.start + k * self.true_period

    def wait_delivery(self, captured_at: float, timeout: float) -> float | None:
        jitter = self.rng.uniform(0.0, 2.0 * self.imp.jitter_ms) / 1000.0
        due = max(captured_at + self.imp.latency_ms / 1000.0 + jitter, self.last_delivery)
        wait = due - clock.now()
        if wait > timeout:
            self.stop.wait(timeout)
            return None
        if wait > 0 and self.stop.wait(wait):
            return None
        self.last_delivery = due
        return clock.now()


class SyntheticCamera:
    """A moving test pattern with a burned-in clock and the station name, flashing once a second."""

    encoded = False

    def __init__(self, params: str = "", width: int = 1280, height: int = 720, fps: float = 25.0,
                 label: str = "OSCE") -> None:
        p = parse_params(params, IMPERFECTION_KEYS | CPR_KEYS
                         | {"label", "freeze_after_s", "freeze_for_s", "flash", "noise", "still"})
        self.imp = _imperfection(p)
        self.freeze_after_s = _optional_number(p, "freeze_after_s")
        self.freeze_for_s = _optional_number(p, "freeze_for_s")
        self.chest = _ChestMotion.from_params(p, width, height)
        self.still = p.get("still", "0") != "0" or self.chest is not None
        # A real camera does not flash; a flash every second would also read as motion at 60/min.
        self.flash = p.get("flash", "0" if self.still else "1") != "0"
        sigma = _optional_number(p, "noise") or 0.0
        if sigma < 0 or sigma > 50:
            raise SourceError(f"synthetic source: noise must be 0..50 grey levels, not {sigma:g}")
        self.noise = _SensorNoise(sigma, width, height, self.imp.seed) if sigma > 0 else None
        self._frozen: np.ndarray | None = None
        self.label = p.get("label", label)
        self.width, self.height, self.fps = width, height, fps
        self.name = "synthetic camera"
        self.description = f"synthetic camera {width}x{height}@{fps:g} ({params or 'ideal'})"
        self._pacer = _Pacer(1.0 / fps, self.imp)
        self._k = 0
        self._pattern = _test_pattern(width, height)

    def open(self) -> None:
        self._pacer.begin()
        self._k = 0
        self._frozen = None

    def read(self, timeout: float) -> RawFrame | None:
        captured_at = self._pacer.capture_time(self._k)
        observed = self._pacer.wait_delivery(captured_at, timeout)
        if observed is None:
            return None
        if _in_fault(captured_at - self._pacer.start, self.freeze_after_s, self.freeze_for_s):
            if self._frozen is None:
                self._frozen = self._render(captured_at)
            image = self._frozen
        else:
            image, self._frozen = self._render(captured_at), None
        frame = RawFrame(image=image, device_t=self._k / self.fps, observed_t=observed)
        self._k += 1
        return frame

    def _render(self, t: float) -> np.ndarray:
        if self.still:  # a still camera, maybe over a moving chest
            image = self._pattern.copy()
            if self.chest is not None:
                self.chest.draw(image, t - self._pacer.start)
        else:
            shift = int(t * 160) % self.width  # 160 px/s: visibly moving, mean brightness constant
            image = np.roll(self._pattern, shift, axis=1)
        h = self.height
        scale = h / 720
        cv2.putText(image, self.label, (int(30 * scale), int(60 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                    1.4 * scale, (255, 255, 255), max(1, int(3 * scale)), cv2.LINE_AA)
        stamp = f"{t:12.3f}"
        cv2.putText(image, stamp, (int(30 * scale), h - int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                    1.4 * scale, (255, 255, 255), max(1, int(3 * scale)), cv2.LINE_AA)
        nearest = round(t / FLASH_PERIOD_S) * FLASH_PERIOD_S
        w = max(0.0, 1.0 - abs(t - nearest) * self.fps) if self.flash else 0.0
        if w > 0:
            image = cv2.addWeighted(image, 1.0 - w, np.full_like(image, 255), w, 0.0)
        if self.noise is not None:
            self.noise.add(image)
        return image

    def close(self) -> None:
        self._pacer.stop.set()


class _SensorNoise:
    """Gaussian noise drawn once into a bank a little larger than the picture; each frame adds the bank seen
    through a random window, so every pixel gets new noise at the cost of two saturating adds (no random
    numbers per frame: at 25 fps and 720p those would cost more than the rest of the frame)."""

    MARGIN = 64  # window offsets 0..64 in each direction: 65 x 65 different noise fields

    def __init__(self, sigma: float, width: int, height: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        noise = np.rint(self.rng.normal(0.0, sigma, (height + self.MARGIN, width + self.MARGIN, 3)))
        self.up = np.clip(noise, 0, 255).astype(np.uint8)  # uint8 halves: cv2 adds them with saturation
        self.down = np.clip(-noise, 0, 255).astype(np.uint8)

    def add(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        dy, dx = (int(v) for v in self.rng.integers(0, self.MARGIN + 1, 2))
        cv2.add(image, self.up[dy: dy + h, dx: dx + w], dst=image)
        cv2.subtract(image, self.down[dy: dy + h, dx: dx + w], dst=image)


CPR_KEYS = {"cpr_rate", "cpr_after_s", "cpr_cycle", "cpr_pause_s"}


class _ChestMotion:
    """A textured chest seen through a fixed window in the middle of the picture, pushed down and let up."""

    AMPLITUDE = 0.05  # peak travel as a fraction of the picture height

    def __init__(self, rate: float, after_s: float, cycle: int, pause_s: float, width: int, height: int) -> None:
        self.period, self.after_s, self.cycle, self.pause_s = 60.0 / rate, after_s, cycle, pause_s
        self.height = height
        self.box = (width // 3, height // 3, max(8, width // 3), max(8, height // 3))  # x, y, w, h
        rng = np.random.default_rng(7)
        bw, bh = self.box[2], self.box[3] + 2 * int(self.AMPLITUDE * height + 4)
        self.texture = cv2.GaussianBlur(rng.integers(0, 255, (bh, bw, 3), dtype=np.uint8), (0, 0), 1.5)

    @classmethod
    def from_params(cls, p: dict[str, str], width: int, height: int) -> _ChestMotion | None:
        if "cpr_rate" not in p:
            return None
        try:
            rate, after = float(p["cpr_rate"]), float(p.get("cpr_after_s", 0))
            cycle, pause = int(p.get("cpr_cycle", 30)), float(p.get("cpr_pause_s", 0))
        except ValueError as exc:
            raise SourceError(f"synthetic source: bad number in cpr parameters: {exc}") from exc
        if not 10 <= rate <= 300 or cycle < 1 or pause < 0 or after < 0:
            raise SourceError("synthetic source: cpr_rate must be 10..300 per minute, cpr_cycle >= 1, "
                              "cpr_pause_s and cpr_after_s >= 0")
        return cls(rate, after, cycle, pause, width, height)

    def depth(self, t: float) -> float:
        """Downward displacement 0..1 at t s after open: a fast 40 % down stroke, a slower recoil."""
        u = t - self.after_s
        if u < 0:
            return 0.0
        if self.pause_s > 0:
            within = u % (self.cycle * self.period + self.pause_s)
            if within >= self.cycle * self.period:
                return 0.0
        else:
            within = u
        phase = (within % self.period) / self.period
        return math.sin(math.pi * phase / 0.8) if phase < 0.4 else math.sin(math.pi * (0.5 + (phase - 0.4) / 1.2))

    def draw(self, image: np.ndarray, t: float) -> None:
        x, y, w, h = self.box
        dy = self.depth(t) * self.AMPLITUDE * self.height
        centre = (w / 2 - 0.5, self.texture.shape[0] / 2 - 0.5 - dy)  # the texture moves down by dy
        image[y: y + h, x: x + w] = cv2.getRectSubPix(self.texture, (w, h), centre)


def _test_pattern(width: int, height: int) -> np.ndarray:
    """Colour bars over a grey ramp: texture for the encoder, a constant mean under horizontal roll."""
    bars = np.array([[192, 192, 192], [0, 192, 192], [192, 192, 0], [0, 192, 0],
                     [192, 0, 192], [0, 0, 192], [192, 0, 0], [16, 16, 16]], dtype=np.uint8)
    idx = (np.arange(width) * len(bars) // width)
    image = np.repeat(bars[idx][None, :, :], height, axis=0)
    ramp = (np.arange(height, dtype=np.float32) / height)[:, None, None]
    image = (image.astype(np.float32) * (0.4 + 0.6 * ramp)).astype(np.uint8)
    # A checkerboard stripe gives the motion something to track.
    y0, y1 = height * 2 // 5, height * 3 // 5
    checker = ((np.arange(width)[None, :] // 40 + np.arange(y1 - y0)[:, None] // 40) % 2) * 200 + 30
    image[y0:y1] = checker[:, :, None].astype(np.uint8)
    return np.ascontiguousarray(image)


class SyntheticMicrophone:
    """Quiet noise with a 1 kHz, 100 ms tone burst starting at every whole second."""

    def __init__(self, params: str = "", rate: int = 48000, block: int = 480) -> None:
        p = parse_params(params, IMPERFECTION_KEYS | {"mute_after_s", "mute_for_s"})
        self.imp = _imperfection(p)
        self.mute_after_s = _optional_number(p, "mute_after_s")
        self.mute_for_s = _optional_number(p, "mute_for_s")
        self.rate = rate
        self.block = block
        self.name = "synthetic microphone"
        self.description = f"synthetic microphone {rate} Hz ({params or 'ideal'})"
        self._pacer = _Pacer(1.0 / rate, self.imp)
        self._n = 0
        self._noise = np.random.default_rng(self.imp.seed)

    def open(self) -> None:
        if self.rate <= 0:
            raise SourceError(f"synthetic microphone: bad sample rate {self.rate}")
        self._pacer.begin()
        self._n = 0

    def read(self, timeout: float) -> AudioBlock | None:
        n0, n1 = self._n, self._n + self.block
        # Delivered when its last sample has been captured.
        observed = self._pacer.wait_delivery(self._pacer.capture_time(n1), timeout)
        if observed is None:
            return None
        t = self._pacer.capture_time(np.arange(n0, n1, dtype=np.float64))
        since = t - np.floor(t / FLASH_PERIOD_S) * FLASH_PERIOD_S
        tone = np.where(since < BEEP_S, 0.5 * np.sin(2 * math.pi * BEEP_HZ * since), 0.0)
        samples = (tone + self._noise.normal(0.0, 0.002, self.block)).astype(np.float32)
        if _in_fault(t[0] - self._pacer.start, self.mute_after_s, self.mute_for_s):
            samples[:] = 0.0
        self._n = n1
        # Like a PortAudio input: the block's first sample was captured one block length
        # (by the device's own count) before it reached us.
        return AudioBlock(samples=samples, first_index=n0, capture_t=observed - self.block / self.rate)

    def close(self) -> None:
        self._pacer.stop.set()
