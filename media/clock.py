"""The one shared clock, and the mapping of each device's own clock onto it.

Every frame and audio block is stamped on `now()` (the host's monotonic clock in seconds).
A device (camera, microphone) counts time on its own clock: a frame counter, a stream's
presentation time, a sample count. That clock runs slightly fast or slow (skew) and its
deliveries arrive late by a varying amount (jitter). `DeviceClock` learns the affine map
device time -> shared time from (device time, observed shared time) pairs:

- the rate (slope) by least squares over a long window, which averages the jitter out, refitted
  twice on the earlier half of the points: a delivery can be late (a backlog flushed when a
  stream starts, a busy CPU) but never early, so the late ones must not tilt the line;
- the offset from the *lower edge* of the last 10 s of residuals, for the same reason: the earliest
  arrivals are the ones closest to the true capture instant. Ten seconds, not two: a machine that
  stalls a source for 2.5 s then flushes its backlog must not drag the edge (a 600 s benchmark
  run under load lost sync for good that way);
- nothing from the first `settle_s` after the device opens once later points exist: devices
  misreport while they start (PulseAudio said 725 ms of latency for its first half second here,
  a network stream flushes its backlog), and the nominal rate is kept until the points span
  `min_span_for_rate_s`, so a short noisy start cannot tilt the line.

The drift estimate (`drift_ppm`) is reported in health and in the manifest.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np


def now() -> float:
    """The shared clock: monotonic seconds on this host."""
    return time.monotonic()


class DeviceClock:
    """Affine map from a device's clock to the shared clock, learnt online."""

    def __init__(
        self,
        window_s: float = 60.0,
        recent_s: float = 10.0,
        edge_quantile: float = 0.1,
        min_span_for_rate_s: float = 5.0,
        refit_every: int = 10,
        settle_s: float = 1.0,
    ) -> None:
        self.window_s = window_s
        self.recent_s = recent_s
        self.edge_quantile = edge_quantile
        self.min_span_for_rate_s = min_span_for_rate_s
        self.refit_every = refit_every
        self.settle_s = settle_s
        self._settled = False
        self._points: deque[tuple[float, float]] = deque()
        self._since_fit = 0
        # shared = offset + rate * (device - device_ref); device_ref keeps the numbers small.
        self._device_ref: float | None = None
        self.rate = 1.0
        self.offset = 0.0

    @property
    def ready(self) -> bool:
        return self._device_ref is not None

    @property
    def drift_ppm(self) -> float:
        """How fast the device clock runs against the shared clock, in ppm (positive: device is fast)."""
        return (1.0 / self.rate - 1.0) * 1e6

    def observe(self, device_t: float, shared_t: float) -> None:
        """Add one observation: the device said `device_t` and we saw it at `shared_t`."""
        if self._device_ref is None:
            self._device_ref = device_t
            self.offset = shared_t
        if not self._settled and device_t - self._device_ref >= self.settle_s:
            self._settled = True
            self._points.clear()
        self._points.append((device_t, shared_t))
        while self._points and device_t - self._points[0][0] > self.window_s:
            self._points.popleft()
        self._since_fit += 1
        if self._since_fit >= self.refit_every or len(self._points) < self.refit_every:
            self._fit()

    def _fit(self) -> None:
        self._since_fit = 0
        ref = self._device_ref
        assert ref is not None  # set by the first observation
        pts = np.asarray(self._points, dtype=np.float64)
        d = pts[:, 0] - ref
        s = pts[:, 1]
        span = d[-1] - d[0]
        if span >= self.min_span_for_rate_s and len(d) >= 8:
            keep = np.ones(len(d), dtype=bool)
            for _ in range(3):
                dk, sk = d[keep], s[keep]
                dc = dk - dk.mean()
                self.rate = float((dc * (sk - sk.mean())).sum() / (dc * dc).sum())
                residual = s - self.rate * d
                keep = residual <= np.median(residual[keep])
        residual = s - self.rate * d
        recent = residual[d >= d[-1] - self.recent_s]
        self.offset = float(np.quantile(recent, self.edge_quantile))

    def to_shared(self, device_t: float) -> float:
        if self._device_ref is None:
            raise RuntimeError("DeviceClock has no observations yet")
        return self.offset + self.rate * (device_t - self._device_ref)

    def to_device(self, shared_t: float) -> float:
        if self._device_ref is None:
            raise RuntimeError("DeviceClock has no observations yet")
        return self._device_ref + (shared_t - self.offset) / self.rate
