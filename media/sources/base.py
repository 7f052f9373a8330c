"""What sources deliver, and how they fail.

A source stamps nothing itself beyond what it observes: its own device time for each item
and the shared-clock instant it saw the item. The recorder's `DeviceClock` turns those into
capture times, so every kind of source is timed by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class SourceError(Exception):
    """A source cannot open or stopped working; the message names the source and the cause."""


@dataclass(slots=True)
class RawFrame:
    """A decoded picture (BGR, uint8, HxWx3)."""

    image: np.ndarray
    device_t: float  # seconds on the device's own clock (frame counter or stream time)
    observed_t: float  # shared clock when it reached us


@dataclass(slots=True)
class EncodedVideo:
    """A compressed packet of a camera that already sends H.264 (stream copy)."""

    packet: Any  # av.Packet, muxed as it is (no decode, no re-encode)
    device_t: float  # the packet's presentation time on the camera's stream clock, seconds
    observed_t: float


@dataclass(slots=True)
class AudioBlock:
    """Consecutive mono samples (float32) starting at device sample `first_index`."""

    samples: np.ndarray
    first_index: int
    capture_t: float  # shared-clock estimate of the first sample's capture (device latency removed)


class VideoSource(Protocol):
    name: str
    description: str
    width: int
    height: int
    fps: float
    encoded: bool  # True: delivers EncodedVideo (stream copy), False: RawFrame

    def open(self) -> None: ...

    def read(self, timeout: float) -> RawFrame | EncodedVideo | None:
        """The next item, or None when nothing came within `timeout` (a stall)."""
        ...

    def close(self) -> None: ...


class AudioSource(Protocol):
    name: str
    description: str
    rate: int

    def open(self) -> None: ...

    def read(self, timeout: float) -> AudioBlock | None: ...

    def close(self) -> None: ...
