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
- for a device that stamps its own media exactly (an RTSP camera's RTP times: `stamped()`), a lower edge
  (2 %), an offset that moves at most 2 ms per second after its first second, the nominal rate for 30 s, not 5,
  and no settling (the camera source itself re-times the backlog a session starts with): all of the scatter is
  then on the way to us, a loaded machine delays most packets (a 5 s fit tilted by a late stretch made
  1600 ppm), and the camera's sound, which follows the same mapping through a drift corrector, follows a slow
  change without a lag (a jumpy edge put 8-18 ms into a camera's own sync under load). Two cameras' mappings,
  six recordings in a row on a machine at load 12-19: within 21 ms (79 ms with the microphone's settings);
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


EARLY_OUTLIER_S = 0.002  # at least this far under the bulk's first quartile: a misreported time, left out
SLEW_AFTER_S = 1.0  # a stamped device's offset moves freely for its first second of points, then slowly


class DeviceClock:
    """Affine map from a device's clock to the shared clock, learnt online."""

    @classmethod
    def stamped(cls) -> DeviceClock:
        """For a device whose own times are exact (the scatter is all in the delivery): see the module doc."""
        return cls(edge_quantile=0.02, max_slew=0.002, min_span_for_rate_s=30.0, settle_s=0.0)

    def __init__(
        self,
        window_s: float = 60.0,
        recent_s: float = 10.0,
        edge_quantile: float = 0.1,
        min_span_for_rate_s: float = 5.0,
        refit_every: int = 10,
        settle_s: float = 1.0,
        max_slew: float | None = None,
    ) -> None:
        self.window_s = window_s
        self.recent_s = recent_s
        self.edge_quantile = edge_quantile
        self.min_span_for_rate_s = min_span_for_rate_s
        self.refit_every = refit_every
        self.settle_s = settle_s
        self.max_slew = max_slew  # seconds of offset change per second of device time, once settled
        self._slew_from: float | None = None  # device time of the last slew-limited offset
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
        # Points far EARLIER than the bulk are a device misreporting (PortAudio's latency through PulseAudio now
        # and then comes one 10 ms block too large), never a delivery: they would pull the lower edge down and,
        # near the end of the window, tilt the rate by hundreds of ppm (9-22 ms of sync spread, measured).
        residual = s - self.rate * d
        q1, q3 = np.quantile(residual, [0.25, 0.75])
        sane = residual >= q1 - max(3.0 * (q3 - q1), EARLY_OUTLIER_S)
        if span >= self.min_span_for_rate_s and len(d) >= 8:
            keep = sane
            for _ in range(3):
                dk, sk = d[keep], s[keep]
                dc = dk - dk.mean()
                self.rate = float((dc * (sk - sk.mean())).sum() / (dc * dc).sum())
                residual = s - self.rate * d
                keep = sane & (residual <= np.median(residual[keep]))
        residual = s - self.rate * d
        recent = residual[(d >= d[-1] - self.recent_s) & sane]
        offset = float(np.quantile(recent, self.edge_quantile))
        if self.max_slew is not None and self._settled and span >= SLEW_AFTER_S:
            if self._slew_from is not None:
                step = self.max_slew * (d[-1] - self._slew_from)
                offset = min(max(offset, self.offset - step), self.offset + step)
            self._slew_from = float(d[-1])
        self.offset = offset

    def to_shared(self, device_t: float) -> float:
        if self._device_ref is None:
            raise RuntimeError("DeviceClock has no observations yet")
        return self.offset + self.rate * (device_t - self._device_ref)

    def to_device(self, shared_t: float) -> float:
        if self._device_ref is None:
            raise RuntimeError("DeviceClock has no observations yet")
        return self._device_ref + (shared_t - self.offset) / self.rate


class FollowerClock:
    """A device timed by another device's clock: a camera's microphone, whose every sample the camera stamps on
    the same clock as its pictures (RTP timestamps tied to the camera's wall clock by its RTCP sender reports).

    `observe(device_t, leader_t)` links the follower's own time (its sample count) to the leader's (the camera's
    clock): an affine fit that needs no jitter filtering, since both times come from the camera, not from
    arrivals. Onto the shared clock it goes through the leader's `DeviceClock`, the one mapping the camera's
    pictures use, so sound and picture of one camera keep the camera's own sync. `leader` is called each time:
    the recorder replaces a camera's DeviceClock when the camera reconnects.
    """

    # A stamp this far off the fitted line: the camera's clock stepped. Smaller differences are the camera's own
    # jitter between its sender reports (tens of ms in GStreamer with long sound packets): the median absorbs them.
    RELINK_S = 0.25

    def __init__(self, leader) -> None:  # noqa: ANN001 - Callable[[], DeviceClock]
        self.leader = leader
        self.link = DeviceClock(settle_s=0.0, edge_quantile=0.5)

    @property
    def ready(self) -> bool:
        return self.link.ready and self.leader().ready

    @property
    def rate(self) -> float:
        return self.link.rate * self.leader().rate

    @property
    def drift_ppm(self) -> float:
        return (1.0 / self.rate - 1.0) * 1e6

    def observe(self, device_t: float, leader_t: float) -> None:
        if self.link.ready and abs(self.link.to_shared(device_t) - leader_t) > self.RELINK_S:
            self.link = DeviceClock(settle_s=0.0, edge_quantile=0.5)
        self.link.observe(device_t, leader_t)

    def to_shared(self, device_t: float) -> float:
        return self.leader().to_shared(self.link.to_shared(device_t))

    def to_device(self, shared_t: float) -> float:
        return self.link.to_device(self.leader().to_device(shared_t))
