"""Rolling CPR figures while an attempt records: the CPR camera's pictures, thinned to a few a second, go
through `media.cpr.motion.LiveCprAnalyser` on one low-priority thread, which every `every_s` seconds
publishes ``{"rate_per_min", "compressions", "ccf", "confidence", "estimate"}`` (the live view's meta
``cpr``, shown in the observation room). The rate is that of the last few seconds (`current()`, a 20 s
series: cheap); the count and the compression fraction come from the whole attempt so far, whose cost grows
with its length (about 0.1 s CPU at 9 minutes), so they are refreshed only every `whole_every_s`.

The capture thread only keeps a reference to every n-th picture (`tap`); the resize to 160 px grey, the
optical flow and the series analysis run on the analyser's thread, niced so that recording always wins.
When the analysis falls behind, pictures are dropped (counted), never queued without bound.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from media.cpr.motion import LiveCprAnalyser

log = logging.getLogger(__name__)

NICE = 10  # the analysis thread's niceness (Linux nices threads one by one)
QUEUE_FRAMES = 20  # pictures waiting for the analyser: 2 s at 10 per second


def rolling_figures(analyser: LiveCprAnalyser, whole: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the observation room shows: the rate of the last few seconds (None when hands are off or
    nothing is sure), compressions and compression fraction so far (from `whole`, the analyser's
    `figures()`, computed when not given), and how sure the analysis is."""
    whole = analyser.figures() if whole is None else whole
    now = analyser.current()
    estimate = bool(whole.get("estimate"))
    return {"rate_per_min": now["rate"] if estimate and now["rate"] is not None else None,
            "compressions": int(whole["compressions"]) if estimate else 0,
            "ccf": whole.get("compression_fraction") if estimate else None,
            "confidence": round(float(now["confidence"] if estimate else whole.get("confidence", 0.0)), 2),
            "estimate": estimate}


class LiveCpr:
    """One recording part's live analysis. `tap(track, item)` goes to `media.recorder.tap_sources`."""

    def __init__(self, publish: Callable[[dict[str, Any]], None], track: str, origin: float, start_s: float,
                 fps: float = 10.0, every_s: float = 2.0, whole_every_s: float = 10.0,
                 roi: tuple[float, float, float, float] | None = None) -> None:
        self.publish, self.track, self.origin = publish, track, origin
        self.interval, self.every_s, self.whole_every_s = 1.0 / fps, every_s, whole_every_s
        self._whole: dict[str, Any] | None = None
        self._whole_at = 0.0
        self.analyser = LiveCprAnalyser(start=start_s, roi=roi)
        self.frames = self.dropped = 0
        self.cpu_s = 0.0  # the analysis thread's own CPU time
        self.last: dict[str, Any] | None = None
        self._due = 0.0
        self._queue: queue.Queue[tuple[np.ndarray, float] | None] = queue.Queue(maxsize=QUEUE_FRAMES)
        self._thread = threading.Thread(target=self._run, name=f"cpr-live-{track}", daemon=True)
        self._thread.start()

    def tap(self, track: str, item: Any) -> None:
        """On the capture thread: keep a reference to a picture now and then, nothing more."""
        image = getattr(item, "image", None)  # stream-copy cameras deliver packets: nothing to analyse
        if track != self.track or image is None:
            return
        t = item.observed_t - self.origin
        if t < self._due - 0.2 * self.interval:
            return
        self._due = max(self._due + self.interval, t)
        try:
            self._queue.put_nowait((image, t))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed: run at normal priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        next_publish = time.monotonic() + self.every_s
        while True:
            entry: tuple[Any, ...] | None
            try:
                entry = self._queue.get(timeout=max(0.05, next_publish - time.monotonic()))
            except queue.Empty:
                entry = ()
            if entry is None:
                break
            try:
                if entry:
                    self.analyser.feed(*entry)
                    self.frames += 1
                if time.monotonic() >= next_publish:
                    next_publish = time.monotonic() + self.every_s
                    # Until there is an estimate, look at the whole series every time: the first figure soon.
                    if self._whole is None or not self._whole.get("estimate") or \
                            time.monotonic() >= self._whole_at + self.whole_every_s:
                        self._whole, self._whole_at = self.analyser.figures(), time.monotonic()
                    self.last = rolling_figures(self.analyser, self._whole)
                    self.publish(self.last)
            except Exception:  # noqa: BLE001 - a failed live figure never stops the recording
                log.exception("live CPR analysis")
            self.cpu_s = time.thread_time()

    def close(self) -> None:
        """Stop the thread (after the pictures already queued)."""
        self._queue.put(None)
        self._thread.join(timeout=10)
