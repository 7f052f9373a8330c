"""The station's wall clock as the agent uses it: carried by the monotonic clock, so a step cannot cut an attempt.

The system clock of a room PC can be stepped while an attempt runs: NTP (chrony's `makestep`) after a late
network, or a technician setting it by hand. A mark's offset into the recording, a part's `media_from` and the
journal's start time are differences of wall times, so a step in the middle of an attempt would move every later
mark on the timeline by the step. Here the wall time is the system time read once (`follow`) plus the monotonic
time since, and the agent calls `follow` only while no attempt is running; a step is logged when it is taken up.

A restart takes the system time as it then is: the parts recorded before and after a restart are placed by their
own `media_from`, each on the clock of the process that recorded it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

_base = time.time() - time.monotonic()  # wall seconds at monotonic zero, as last followed


def now() -> datetime:
    """The station's wall time, unmoved by steps of the system clock since the last `follow()`."""
    return datetime.fromtimestamp(time.monotonic() + _base, UTC)


def step_s() -> float:
    """How far the system clock has moved away from `now()` since the last `follow()` (positive: ahead)."""
    return time.time() - time.monotonic() - _base


def follow() -> float:
    """Take up the system clock as it now is; return the step taken up (seconds)."""
    global _base
    step = step_s()
    _base += step
    return step
