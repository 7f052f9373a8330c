"""Audio drift correction: device samples in, exactly `rate` samples per shared-clock second out.

A microphone's 48 kHz is 48 kHz by its own crystal: 100 ppm off is 0.36 s an hour, 1000 ppm
(cheap USB microphones) 3.6 s. A player plays audio as one continuous sample stream, so a
recorder that trusts the nominal rate lets sound slide away from picture. `DriftCorrector`
makes output sample j stand for shared time origin + j / rate: it reads the device samples
at fractional positions taken from the device's `DeviceClock`, steering gently (a phase-locked
loop with a half-second time constant) so that clock refits never click.
"""

from __future__ import annotations

import math

import numpy as np

from media.clock import DeviceClock, FollowerClock
from media.sources.base import AudioBlock

STEER_TAU_S = 0.5
MAX_STEER = 0.005  # at most 0.5 % pitch change while steering: inaudible
RESYNC_S = 0.1  # beyond this error we jump instead of steering (samples were lost)


class DriftCorrector:
    """`clock`: the device's own (a microphone: learnt from the blocks' arrival) or a `FollowerClock` (a camera's
    microphone: the blocks' `capture_t` is the camera's clock, mapped by the camera's picture clock)."""

    def __init__(self, rate: int, origin: float, latency_s: float = 0.0,
                 clock: DeviceClock | FollowerClock | None = None) -> None:
        self.rate = rate
        self.origin = origin
        self.latency_s = latency_s
        self.clock = clock if clock is not None else DeviceClock()
        self.resyncs = 0
        self._buf = np.zeros(0, dtype=np.float32)
        self._base = 0  # device index of _buf[0]
        self._j: int | None = None  # next output sample index (pts in 1/rate units)
        self._p = 0.0  # device position of output sample _j
        self._floor: int | None = None  # where the output stood before a discontinuity

    def _target(self, j: int) -> float:
        shared = self.origin + j / self.rate + self.latency_s
        return self.clock.to_device(shared) * self.rate

    def push(self, block: AudioBlock) -> tuple[int, np.ndarray]:
        """Take a device block; return (pts of the first output sample, output samples)."""
        self.clock.observe(block.first_index / self.rate, block.capture_t)
        if not self.clock.ready:
            return 0, np.zeros(0, dtype=np.float32)  # a camera's sound before its pictures have mapped its clock
        if self._j is None and self.clock.to_shared((block.first_index + block.samples.size) / self.rate) \
                - self.latency_s < self.origin:
            # Still warming up: learn the clock, keep nothing. Starting the output on an unsettled
            # clock left a 30 ms error that the loop then took 6 s to steer out (measured).
            return 0, np.zeros(0, dtype=np.float32)
        if self._buf.size == 0:
            self._base = block.first_index
        elif block.first_index != self._base + self._buf.size:
            # The device's count is the truth; a discontinuity means the source restarted.
            self._buf = np.zeros(0, dtype=np.float32)
            self._base = block.first_index
            self._floor = self._j  # the output never goes back in time: a muxer needs rising timestamps
            self._j = None
        self._buf = np.concatenate([self._buf, block.samples.astype(np.float32, copy=False)])
        if self._j is None:
            first_shared = self.clock.to_shared(self._base / self.rate) - self.latency_s
            self._j = max(self._floor or 0, math.ceil((first_shared - self.origin) * self.rate))
            self._p = self._target(self._j)
        error = self._target(self._j) - self._p
        if abs(error) > RESYNC_S * self.rate:
            self._p += error
            self.resyncs += 1
            error = 0.0
        step = 1.0 / self.clock.rate + max(-MAX_STEER, min(MAX_STEER, error / (STEER_TAU_S * self.rate)))
        start = self._j
        first_pos = self._p - self._base
        if first_pos < 0:  # before what we hold: skip ahead to the data
            skip = math.ceil(-first_pos / step)
            self._j += skip
            self._p += skip * step
            first_pos = self._p - self._base
            start = self._j
        last_usable = self._buf.size - 2
        n = int(math.floor((last_usable - first_pos) / step)) + 1 if last_usable >= first_pos else 0
        if n <= 0:
            return start, np.zeros(0, dtype=np.float32)
        pos = first_pos + step * np.arange(n)
        idx = pos.astype(np.int64)
        frac = (pos - idx).astype(np.float32)
        out = self._buf[idx] * (1.0 - frac) + self._buf[idx + 1] * frac
        self._j += n
        self._p += step * n
        keep_from = max(0, int(self._p - self._base) - 1)
        self._buf = self._buf[keep_from:]
        self._base += keep_from
        return start, out
