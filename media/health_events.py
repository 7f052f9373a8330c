"""The station health-event wire format: one definition, used by the agent that records and sends the events
(station_agent/health_log.py) and by the server that checks, stores and shows them (review_server/routes/
health_events.py, review_server/station_health.py). It lives here because both programs use it and neither may
import the other, and because what it reports is the station's recording: cameras, microphone, disk, upload.

``PUT /api/stations/{station}/health-events`` with ``{"events": [event, ...]}``, at most `MAX_EVENTS` a request::

    {"id": "3f2a…",                          # the station's id for the event: the idempotency key
     "code": "camera_frozen",                # camera_lost, camera_frozen, camera_black, camera_slow, mic_lost,
                                             # mic_silent, disk_full, disk_low, upload_backlog, upload_failed,
                                             # agent_started
     "text": "Камера cam0: изображение застыло (3.0 с)",   # what the station showed, at most MAX_TEXT characters
     "attempt_id": "st1-007",                # the attempt then running, or null
     "started_at": "2026-07-01T09:00:05.000+00:00",         # the station's wall clock, UTC (as marks' wall_time)
     "ended_at": null}                       # null while it lasts; never before started_at

The agent sends an event when it begins and again when it ends; the same event sent twice is stored once, and an
end only ever closes an event. The server gives events back (review page, export package) in the same form,
without the id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FIELDS = ("id", "code", "text", "attempt_id", "started_at", "ended_at")
MAX_EVENTS = 200  # per request; the agent sends its backlog in batches of this many
MAX_TEXT = 300
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # event and attempt ids
CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def path(station: str) -> str:
    return f"/api/stations/{station}/health-events"


def time_text(when: datetime) -> str:
    """A time as the format writes it: UTC, milliseconds."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


class HealthEventError(ValueError):
    """An event (or a batch) breaks the format; `where` is the JSON path of the field that is wrong."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where, self.message = where, message


@dataclass(frozen=True)
class HealthEvent:
    id: str
    code: str
    text: str
    attempt_id: str | None
    started_at: datetime
    ended_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "code": self.code, "text": self.text, "attempt_id": self.attempt_id,
                "started_at": time_text(self.started_at),
                "ended_at": time_text(self.ended_at) if self.ended_at is not None else None}

    def shown(self) -> dict[str, Any]:
        """As the server gives it back: without the station's id."""
        out = self.to_json()
        del out["id"]
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str = "event") -> HealthEvent:
        """Strict: no unknown field, ids and code as identifiers, text without control characters, UTC times."""
        if not isinstance(obj, dict):
            raise HealthEventError(where, "expected an object")
        extra = sorted(set(obj) - set(FIELDS), key=str)
        if extra:
            raise HealthEventError(f"{where}.{extra[0]}", f"unknown field {extra[0]!r}")
        event = cls(id=_ident(obj, "id", where, ID_RE), code=_ident(obj, "code", where, CODE_RE),
                    text=_text(obj, "text", where), attempt_id=_ident(obj, "attempt_id", where, ID_RE, required=False),
                    started_at=_time(obj, "started_at", where),
                    ended_at=_time(obj, "ended_at", where) if obj.get("ended_at") is not None else None)
        if event.ended_at is not None and event.ended_at < event.started_at:
            raise HealthEventError(f"{where}.ended_at", "ends before it starts")
        return event


def batch(events: list[HealthEvent]) -> dict[str, Any]:
    """The request body for up to MAX_EVENTS events."""
    if len(events) > MAX_EVENTS:
        raise ValueError(f"at most {MAX_EVENTS} events a request, not {len(events)}")
    return {"events": [e.to_json() for e in events]}


def parse_batch(items: Any) -> list[HealthEvent]:
    """The `events` of a request body."""
    if not isinstance(items, list) or len(items) > MAX_EVENTS:
        raise HealthEventError("events", f"expected a list of at most {MAX_EVENTS} events")
    return [HealthEvent.from_json(obj, f"events[{i}]") for i, obj in enumerate(items)]


def _present(obj: dict[str, Any], name: str, where: str, required: bool = True) -> Any:
    value = obj.get(name)
    if value is None and required:
        raise HealthEventError(f"{where}.{name}", "required")
    return value


def _ident(obj: dict[str, Any], name: str, where: str, pattern: re.Pattern[str], *, required: bool = True) -> Any:
    value = _present(obj, name, where, required)
    if value is not None and (not isinstance(value, str) or not pattern.fullmatch(value)):
        raise HealthEventError(f"{where}.{name}", f"not a valid identifier (must match {pattern.pattern})")
    return value


def _text(obj: dict[str, Any], name: str, where: str) -> str:
    value = _present(obj, name, where)
    if not isinstance(value, str):
        raise HealthEventError(f"{where}.{name}", "expected a string")
    if len(value) > MAX_TEXT:
        raise HealthEventError(f"{where}.{name}", f"longer than {MAX_TEXT} characters")
    if _CONTROL.search(value):
        raise HealthEventError(f"{where}.{name}", "control characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HealthEventError(f"{where}.{name}", "invalid Unicode (unpaired surrogate)") from None
    return value


def _time(obj: dict[str, Any], name: str, where: str) -> datetime:
    value = _present(obj, name, where)
    try:
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError(value)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.utcoffset() != timedelta(0):
            raise ValueError(value)
    except ValueError:
        raise HealthEventError(f"{where}.{name}", "expected ISO-8601 UTC time like 2026-03-01T09:30:00Z") from None
    return parsed
