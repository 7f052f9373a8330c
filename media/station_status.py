"""The station status report's wire format: one definition, used by the agent that sends it every few seconds
(station_agent/status_report.py) and by the server that checks it and shows it on the centre console's stations
board (review_server/routes/station_status.py). Here because both programs use it and neither may import the
other (as media/health_events.py).

``PUT /api/stations/{station}/status`` with one report::

    {"format": "osce-station-status/1",
     "agent_version": "0.1.0",
     "sent_at": "2026-07-01T09:00:05.000+00:00",    # the station's wall clock, UTC (the server compares its own)
     "phase": "performing",                         # idle, scheduled, reading, performing, done
     "attempt_id": "st1-007", "candidate": "2611001", "time_left_s": 312.5,   # or null
     "recording": true,
     "cameras": [{"track": "cam0", "kind": "rtsp", "state": "recording", "arriving": true, "fps": 25.0,
                  "frozen": false, "black": false}],          # kind: the source's scheme, never its address
     "microphone": {"state": "recording", "arriving": true, "level_dbfs": -31.5, "silent": false},  # or null
     "disk": {"free_mb": 81234.5, "reserve_mb": 2048.0, "warning": false, "stop": false},
     "upload": {"queue_length": 3, "bytes_pending": 1048576, "oldest_age_s": 4.2, "failed": 0,
                "last_success_at": "2026-07-01T09:00:03.000+00:00"},       # times: null when never
     "clock": {"source": "server", "offset_s": -0.012, "last_sync_age_s": 12.0},
     "warnings": [{"code": "camera_frozen", "text": "Камера cam0: изображение застыло (3.0 с)"}]}

Unknown keys are dropped (a newer agent may tell more than this server shows); a known key of the wrong type is
refused with its JSON path. The report is informative: what must not be lost (marks, media, health events) has
its own durable path.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

FORMAT = "osce-station-status/1"
INTERVAL_S = 5.0  # how often an agent reports
MAX_CAMERAS = 8
MAX_WARNINGS = 32
MAX_TEXT = 300
IDENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def path(station: str) -> str:
    return f"/api/stations/{station}/status"


def time_text(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


class StatusError(ValueError):
    """The report breaks the format; `where` is the JSON path of the field that is wrong."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where, self.message = where, message


class _Reader:
    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise StatusError(where, "expected an object")
        self.obj, self.where = obj, where

    def _at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: str, *, required: bool = False) -> Any:
        value = self.obj.get(key)
        if value is None:
            if required:
                raise StatusError(self._at(key), "required")
            return None
        return _CHECKS[kind](value, self._at(key))


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise StatusError(where, "expected true or false")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StatusError(where, "expected a number")
    if abs(value) > 1e15:
        raise StatusError(where, "out of range")
    return float(value)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**53:
        raise StatusError(where, "expected a non-negative integer")
    return value


def _ident(value: Any, where: str) -> str:
    if not isinstance(value, str) or not IDENT_RE.fullmatch(value):
        raise StatusError(where, f"not a valid identifier (must match {IDENT_RE.pattern})")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or _CONTROL.search(value):
        raise StatusError(where, f"expected text of at most {MAX_TEXT} characters without control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise StatusError(where, "invalid Unicode (unpaired surrogate)") from None
    return value


def _time(value: Any, where: str) -> str:
    try:
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError(value)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.utcoffset() != timedelta(0):
            raise ValueError(value)
    except ValueError:
        raise StatusError(where, "expected ISO-8601 UTC time like 2026-03-01T09:30:00Z") from None
    return time_text(parsed)


_CHECKS = {"bool": _bool, "number": _number, "count": _count, "ident": _ident, "text": _text, "time": _time}


def _fields(obj: Any, where: str, spec: dict[str, str]) -> dict[str, Any]:
    r = _Reader(obj, where)
    return {key: r.get(key, kind) for key, kind in spec.items()}


CAMERA = {"track": "ident", "kind": "ident", "state": "ident", "arriving": "bool", "fps": "number",
          "frozen": "bool", "black": "bool"}
MICROPHONE = {"state": "ident", "arriving": "bool", "level_dbfs": "number", "silent": "bool"}
DISK = {"free_mb": "number", "reserve_mb": "number", "warning": "bool", "stop": "bool"}
UPLOAD = {"queue_length": "count", "bytes_pending": "count", "oldest_age_s": "number", "failed": "count",
          "last_success_at": "time"}
CLOCK = {"source": "ident", "offset_s": "number", "last_sync_age_s": "number"}
TOP = {"agent_version": "text", "phase": "ident", "attempt_id": "ident", "candidate": "ident",
       "time_left_s": "number", "recording": "bool"}


def parse(obj: Any) -> dict[str, Any]:
    """A report as received, checked and reduced to the known keys (what the server keeps)."""
    r = _Reader(obj, "")
    if obj.get("format") != FORMAT:
        raise StatusError("format", f"expected {FORMAT!r}")
    out: dict[str, Any] = {"format": FORMAT, "sent_at": r.get("sent_at", "time", required=True)}
    out.update({key: r.get(key, kind) for key, kind in TOP.items()})
    cameras = obj.get("cameras") or []
    if not isinstance(cameras, list) or len(cameras) > MAX_CAMERAS:
        raise StatusError("cameras", f"expected a list of at most {MAX_CAMERAS} cameras")
    out["cameras"] = [_fields(c, f"cameras[{i}]", CAMERA) for i, c in enumerate(cameras)]
    for key, spec in (("microphone", MICROPHONE), ("disk", DISK), ("upload", UPLOAD), ("clock", CLOCK)):
        out[key] = None if obj.get(key) is None else _fields(obj[key], key, spec)
    warnings = obj.get("warnings") or []
    if not isinstance(warnings, list) or len(warnings) > MAX_WARNINGS:
        raise StatusError("warnings", f"expected a list of at most {MAX_WARNINGS} warnings")
    out["warnings"] = []
    for i, w in enumerate(warnings):
        wr = _Reader(w, f"warnings[{i}]")
        out["warnings"].append({"code": wr.get("code", "ident", required=True),
                                "text": wr.get("text", "text", required=True)})
    return out
