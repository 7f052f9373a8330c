"""The readiness check's wire format: one definition, used by the agent that measures and sends its report
(station_agent/readiness.py) and by the server that checks, judges and keeps it (review_server/readiness.py). It
lives here because both programs use it and neither may import the other, and because what it reports is the
station's recording: cameras, microphone, sync, clock, disk, upload.

The channel (the agent polls, the server never calls the room PC):

- ``GET /api/stations/{station}/readiness/next?wait=25``: held open up to `wait` seconds; 204 when nothing is asked,
  200 ``{"check": {"id": 17, "seconds": 10, "recording": "readiness-17"}}`` when the server asks for a check.
- ``POST /api/stations/{station}/readiness/{id}/progress`` ``{"state": "recording" | "uploading"}``.
- the test recording's fragments over tus like any other, with the metadata ``readiness`` = the check's id instead
  of ``attempt_id`` (the server keeps them apart from candidates' recordings);
- ``POST /api/stations/{station}/readiness/{id}/report`` with a `Report` (below), as JSON.

A report either says why the agent refused (``refused``: an attempt running or about to start) or what it
measured; the server judges it (review_server/readiness_judge.py), so the limits are the
centre's, in one place.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FORMAT = "osce-readiness/1"
PROGRESS_STATES = ("recording", "uploading")
REFUSALS = ("attempt_running", "attempt_soon")
MAX_TEXT = 500
MAX_ITEMS = 2000  # fragments of a test recording; cameras
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ReportError(ValueError):
    """A report breaks the format; `where` is the JSON path of the field that is wrong."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where, self.message = where, message


@dataclass(frozen=True)
class Refusal:
    code: str  # one of REFUSALS
    attempt_id: str | None = None
    phase: str | None = None
    seconds: float | None = None  # left in the attempt's phase, or until it starts


@dataclass(frozen=True)
class CameraResult:
    source: str  # the configured spec
    track: str | None  # the recording's track (cam0 ...), None when it did not open
    error: str | None = None  # why it did not open (the source's own message)
    frames: int = 0  # delivered by the camera during the test
    fps: float = 0.0  # delivered per second
    requested_fps: float = 0.0
    luma: float | None = None  # mean grey level of its pictures, 0..255
    black: bool = False
    frozen_s: float = 0.0  # the longest time its picture stayed the same
    arriving: bool = False  # pictures were still coming at the end


@dataclass(frozen=True)
class MicrophoneResult:
    source: str
    error: str | None = None
    arriving: bool = False
    level_dbfs: float | None = None  # mean over the test
    peak_dbfs: float | None = None  # loudest second
    floor_dbfs: float = -60.0  # the room's floor: under it, sound counts as silence (the agent's health.silence_dbfs)


@dataclass(frozen=True)
class SyncResult:
    track: str | None  # the track measured
    pairs: int = 0  # flash-and-beep pairs found; 0: not measured (the calibration clip was not playing)
    median_ms: float | None = None  # sound minus picture; positive: the sound comes late
    max_abs_ms: float | None = None
    suggested_latency_ms: float | None = None  # the camera latency that would bring the median to zero


@dataclass(frozen=True)
class DiskResult:
    free_bytes: int
    reserve_bytes: int
    recorded_bytes: int  # of the test recording: with its seconds, what a second of this station costs
    planned_s: float  # recording still planned today by the station's schedule
    planned_attempts: int


@dataclass(frozen=True)
class FragmentRef:
    track: str
    seq: int
    sha256: str
    size: int


@dataclass(frozen=True)
class UploadResult:
    fragments: tuple[FragmentRef, ...]  # what the test recording's manifest lists
    error: str | None = None  # why the upload did not finish
    seconds: float = 0.0


@dataclass(frozen=True)
class Report:
    agent_time: datetime  # the station's system clock when it sent the report (the server measures the offset)
    format: str = FORMAT
    refused: Refusal | None = None
    error: str | None = None  # the test recording could not be made at all
    seconds: float = 0.0  # media recorded
    failures: tuple[str, ...] = ()  # the recorder's own failure messages
    cameras: tuple[CameraResult, ...] = ()
    microphone: MicrophoneResult | None = None  # None: no microphone configured
    sync: SyncResult | None = None
    disk: DiskResult | None = None
    upload: UploadResult | None = None

    def to_json(self) -> dict[str, Any]:
        return _dump(self)

    @classmethod
    def from_json(cls, obj: Any) -> Report:
        """Strict: no unknown field, every type as declared, texts without control characters, UTC times."""
        report = _load(cls, obj, "report")
        if report.format != FORMAT:
            raise ReportError("report.format", f"expected {FORMAT!r}")
        if report.refused is not None and report.refused.code not in REFUSALS:
            raise ReportError("report.refused.code", f"one of {', '.join(REFUSALS)}")
        return report


def _dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_dump(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds")
    return value


def _load(cls: type, obj: Any, where: str) -> Any:
    if not isinstance(obj, dict):
        raise ReportError(where, "expected an object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = sorted(set(obj) - set(fields), key=str)
    if extra:
        raise ReportError(f"{where}.{extra[0]}", f"unknown field {extra[0]!r}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name not in obj:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ReportError(f"{where}.{name}", "required")
            continue
        values[name] = _value(hints[name], obj[name], f"{where}.{name}")
    return cls(**values)


def _value(hint: Any, value: Any, where: str) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
        if value is None:
            return None
        return _value(next(a for a in args if a is not type(None)), value, where)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise ReportError(where, f"expected a list of at most {MAX_ITEMS}")
        return tuple(_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return _load(hint, value, where)  # type: ignore[arg-type]
    if hint is bool:
        if not isinstance(value, bool):
            raise ReportError(where, "expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
            raise ReportError(where, "expected a non-negative integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ReportError(where, "expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or len(value) > MAX_TEXT or _CONTROL.search(value):
            raise ReportError(where, f"expected a text of at most {MAX_TEXT} characters without control characters")
        return value
    if hint is datetime:
        try:
            if not isinstance(value, str) or len(value) > 40:
                raise ValueError(value)
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.utcoffset() != timedelta(0):
                raise ValueError(value)
        except ValueError:
            raise ReportError(where, "expected ISO-8601 UTC time like 2026-03-01T09:30:00Z") from None
        return parsed
    raise TypeError(f"{where}: no rule for {hint!r}")  # a field declared with a type this loader does not know
