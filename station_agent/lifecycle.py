"""An attempt's life: the schedule, phases and remaining time on the exam clock, cues, durable state, its log.

The schedule (from the server, or a local file until the server provides it) is JSON:

```json
{"server_time": "2026-11-26T08:00:00+00:00",
 "attempts": [{"attempt_id": "d1-st1-007", "candidate": "240517", "station_id": "st1",
               "checklist": "01_basic_cpr_adult", "reading_starts_at": "2026-11-26T08:00:30+00:00",
               "reading_s": 30, "performing_s": 510}]}
```

served at ``GET {server}/api/stations/{station_id}/schedule`` (bearer token). `reading_s` and
`performing_s` are optional (the station's checklist gives them); attempts of other stations are
ignored. The exam clock is the server's: the agent measures its offset at each fetch
(server_time minus the request's midpoint) and computes phases on local time plus that offset.

Phases: scheduled -> reading -> performing -> done. An attempt's folder is
``<data>/recordings/<attempt_id>/`` with ``part-N/`` recordings and ``attempt.jsonl``, its log:
one JSON object a line, appended durably (header, phases, cues, parts started and stopped, gaps; at the end
``part_closed`` for a part a crash cut short, ``closed_after_restart`` when the agent was down at the end time,
then ``attempt_done``).
"""

from __future__ import annotations

import io
import json
import math
import re
import time
import wave
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from media.durable import append_line, write_atomic
from media.manifest import ManifestError, read_manifest
from media.recorder import WARMUP_S

from . import station_clock
from .texts import russian

ATTEMPT_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,99}\Z")  # \Z: "$" would let a trailing newline in
CANDIDATE_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]{0,39}\Z")
LOG_NAME = "attempt.jsonl"
CUES = {cue: russian(f"cue_{cue}") for cue in ("reading", "performing", "one_minute", "time_up")}  # as spoken


class ScheduleError(ValueError):
    """A schedule or attempt request that cannot be used; the message names where and which field."""


def utc(text: str, where: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ScheduleError(f"{where}: not an ISO-8601 time: {text!r}") from None
    if when.tzinfo is None:
        raise ScheduleError(f"{where}: needs a UTC offset: {text!r}")
    return when.astimezone(UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Attempt:
    attempt_id: str
    candidate: str
    station_id: str
    checklist: str
    reading_starts_at: datetime
    reading_s: float
    performing_s: float
    origin: str = "schedule"  # or "manual": a technician started it
    stopped_at: datetime | None = None  # stopped by hand before its time was up

    @property
    def performing_starts_at(self) -> datetime:
        return self.reading_starts_at + timedelta(seconds=self.reading_s)

    @property
    def time_up_at(self) -> datetime:
        return self.performing_starts_at + timedelta(seconds=self.performing_s)

    @property
    def ends_at(self) -> datetime:
        return min(self.time_up_at, self.stopped_at) if self.stopped_at else self.time_up_at

    def phase_at(self, now: datetime) -> tuple[str, float]:
        """The phase at `now` (exam clock) and the seconds left in it (0 when done)."""
        if now >= self.ends_at:
            return "done", 0.0
        if now < self.reading_starts_at:
            return "scheduled", (self.reading_starts_at - now).total_seconds()
        if now < self.performing_starts_at:
            return "reading", (self.performing_starts_at - now).total_seconds()
        return "performing", (self.time_up_at - now).total_seconds()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["reading_starts_at"] = iso(self.reading_starts_at)
        data["stopped_at"] = iso(self.stopped_at) if self.stopped_at else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str, default_reading_s: float = 30,
                  default_performing_s: float = 510, station_id: str | None = None) -> Attempt:
        def text(key: str, pattern: re.Pattern[str] | None = None, default: str | None = None) -> str:
            value = data.get(key, default)
            if not isinstance(value, str) or not value:
                raise ScheduleError(f"{where}.{key}: missing or not a string")
            if pattern is not None and not pattern.match(value):
                raise ScheduleError(f"{where}.{key}: letters, digits and '-' only, not {value!r}")
            return value

        def seconds(key: str, default: float) -> float:
            value = data.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
                raise ScheduleError(f"{where}.{key}: must be seconds between 0 and 86400, not {value!r}")
            return float(value)

        stopped = data.get("stopped_at")
        return cls(
            attempt_id=text("attempt_id", ATTEMPT_ID_RE),
            candidate=text("candidate", CANDIDATE_RE),
            station_id=text("station_id", default=station_id),
            checklist=text("checklist", default=""),
            reading_starts_at=utc(data.get("reading_starts_at", ""), f"{where}.reading_starts_at"),
            reading_s=seconds("reading_s", default_reading_s),
            performing_s=seconds("performing_s", default_performing_s),
            origin=data.get("origin", "schedule") if data.get("origin") in ("schedule", "manual") else "schedule",
            stopped_at=utc(stopped, f"{where}.stopped_at") if stopped else None,
        )


def parse_schedule(data: Any, station_id: str, checklist: str, reading_s: float, performing_s: float,
                   where: str = "schedule") -> tuple[datetime | None, list[Attempt]]:
    """The server time and this station's attempts of a schedule document."""
    if not isinstance(data, dict) or not isinstance(data.get("attempts"), list):
        raise ScheduleError(f"{where}: expected an object with an \"attempts\" list")
    server_time = utc(data["server_time"], f"{where}.server_time") if data.get("server_time") else None
    attempts = []
    for i, raw in enumerate(data["attempts"]):
        if not isinstance(raw, dict):
            raise ScheduleError(f"{where}.attempts[{i}]: must be an object")
        if raw.get("station_id", station_id) != station_id:
            continue
        raw = {"checklist": checklist, **raw, "origin": "schedule"}
        attempts.append(Attempt.from_json(raw, f"{where}.attempts[{i}]", reading_s, performing_s, station_id))
    return server_time, attempts


class ExamClock:
    """The server's clock, carried between schedule polls by this machine's monotonic clock.

    Before the first answer it is the station's own clock (`station_clock`). A step of the system clock moves
    no phase and no cue: the exam time is the server time of the last poll plus the monotonic time since.
    `offset_s` is how far the exam clock is ahead of the station's clock, for turning exam times into station times.
    """

    def __init__(self) -> None:
        self._ahead_s = 0.0  # exam time minus station time, before the first answer
        self._base: float | None = None  # server epoch seconds at monotonic zero
        self.source = "local"
        self.synced_at: float | None = None  # monotonic

    def now(self) -> datetime:
        if self._base is None:
            return station_clock.now() + timedelta(seconds=self._ahead_s)
        return datetime.fromtimestamp(time.monotonic() + self._base, UTC)

    @property
    def offset_s(self) -> float:
        return (self.now() - station_clock.now()).total_seconds()

    def use_offset(self, offset_s: float, source: str) -> None:
        """Run `offset_s` ahead of the station's clock (a cached offset, until the server answers)."""
        self._ahead_s, self._base, self.source = offset_s, None, source

    def observe(self, server_time: datetime, sent: float, received: float) -> None:
        """The server said `server_time` between monotonic `sent` and `received`."""
        self._base = server_time.timestamp() - (sent + received) / 2
        self.source, self.synced_at = "server", received

    def to_json(self) -> dict[str, Any]:
        age = time.monotonic() - self.synced_at if self.synced_at is not None else None
        return {"source": self.source, "offset_s": round(self.offset_s, 3),
                "last_sync_age_s": None if age is None else round(age, 1)}


def active_attempt(attempts: list[Attempt], now: datetime, lead_s: float = 0.0) -> Attempt | None:
    """The attempt in its reading or performing phase at `now`, or starting within `lead_s` (the earliest)."""
    soon = now + timedelta(seconds=lead_s)
    live = [a for a in attempts if a.phase_at(now)[0] in ("reading", "performing")
            or (a.phase_at(now)[0] == "scheduled" and a.phase_at(soon)[0] in ("reading", "performing"))]
    return min(live, key=lambda a: a.reading_starts_at) if live else None


def due_cues(attempt: Attempt, now: datetime, warn_before_end_s: float) -> list[tuple[str, datetime]]:
    """The cues of an attempt whose time has come, in order."""
    cues = [("reading", attempt.reading_starts_at), ("performing", attempt.performing_starts_at)]
    if 0 < warn_before_end_s < attempt.performing_s:
        cues.append(("one_minute", attempt.time_up_at - timedelta(seconds=warn_before_end_s)))
    cues.append(("time_up", attempt.time_up_at))
    return [(cue, at) for cue, at in cues if at <= now and at <= attempt.ends_at]


class StateStore:
    """The attempts this station started or touched, kept in one JSON file written atomically.

    Survives kill -9: a manual attempt, or one stopped early, is known again after a restart.
    """

    KEEP = 200

    def __init__(self, path: Path) -> None:
        self.path = path
        self.attempts: dict[str, Attempt] = {}
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            for key, raw in data.get("attempts", {}).items():
                self.attempts[key] = Attempt.from_json(raw, f"{path}: attempts.{key}")

    def put(self, attempt: Attempt) -> None:
        self.attempts[attempt.attempt_id] = attempt
        if len(self.attempts) > self.KEEP:
            for old in sorted(self.attempts.values(), key=lambda a: a.reading_starts_at)[: -self.KEEP]:
                del self.attempts[old.attempt_id]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"attempts": {k: a.to_json() for k, a in self.attempts.items()}}
        write_atomic(self.path, json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8"))

    def merged(self, scheduled: list[Attempt]) -> list[Attempt]:
        """The schedule, with this station's own knowledge (a manual stop, manual attempts) on top."""
        out = {a.attempt_id: a for a in scheduled}
        for key, known in self.attempts.items():
            if key in out:
                out[key] = replace(out[key], stopped_at=known.stopped_at)
            else:
                out[key] = known
        return list(out.values())


class AttemptLog:
    """``attempt.jsonl`` of one attempt: appended and fsynced line by line."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOG_NAME

    @property
    def exists(self) -> bool:
        return self.path.is_file() and self.path.stat().st_size > 0

    def write(self, event: str, **fields: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"event": event, "wall": iso(station_clock.now()), **fields}, ensure_ascii=False)
        with open(self.path, "a", encoding="utf-8") as fh:
            append_line(fh, line)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                break  # a line cut short by a crash: the last one
        return out


def part_dirs(folder: Path) -> list[Path]:
    parts = [p for p in folder.glob("part-*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(parts, key=lambda p: int(p.name[5:]))


def part_media_span(part: Path) -> tuple[datetime | None, datetime | None, str | None]:
    """Wall-clock start and end of a part's recorded media, and its end reason (None: it never ended cleanly)."""
    try:
        manifest = read_manifest(part)
    except ManifestError:
        return None, None, None
    origin = utc(manifest.header["started_wall"], str(part)) + timedelta(seconds=WARMUP_S)
    ends = [f.end for f in manifest.fragments if f.kind == "media" and f.end is not None]
    end = origin + timedelta(seconds=max(ends)) if ends else origin
    return origin, end, manifest.end["reason"] if manifest.end else None


def unclosed_attempts(recordings: Path) -> list[str]:
    """Attempts whose log has no ``attempt_done``: the agent was not running (or died) when they ended."""
    return sorted(p.parent.name for p in recordings.glob(f"*/{LOG_NAME}")
                  if not any(e.get("event") == "attempt_done" for e in AttemptLog(p.parent).read()))


def logged_attempt(alog: AttemptLog) -> Attempt | None:
    """The attempt as its log's header line tells it (when neither the schedule nor the state file has it)."""
    header = next((e for e in alog.read() if e.get("event") == "attempt"), None)
    try:
        return None if header is None else Attempt.from_json(header, str(alog.path))
    except ScheduleError:
        return None


def cue_wav(cue: str, rate: int = 16000) -> bytes:
    """A short tone pattern for a cue, as a 16-bit mono WAV: 1 beep to read, 2 to start, 3 for a minute left."""
    beeps = {"reading": (1, 880.0, 0.35), "performing": (2, 880.0, 0.25), "one_minute": (3, 1200.0, 0.15),
             "time_up": (1, 660.0, 1.0)}
    if cue not in beeps:
        raise KeyError(cue)
    count, hz, length = beeps[cue]
    t = np.arange(int(rate * length)) / rate
    envelope = np.minimum(1.0, np.minimum(t, length - t) / 0.01)  # 10 ms fades: no clicks
    beep = 0.5 * envelope * np.sin(2 * math.pi * hz * t)
    pause = np.zeros(int(rate * 0.15))
    signal = np.concatenate([np.concatenate([beep, pause]) for _ in range(count)])
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((signal * 32767).astype("<i2").tobytes())
    return buffer.getvalue()
