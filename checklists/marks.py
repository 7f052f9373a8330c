"""The one mark-event format and its merge rule, shared by the station, the server and the marking pages.

Wire format (JSON object, every key required, ``null`` where a field does not apply)::

    {"event_id": "<uuid4>", "attempt_id": "...", "station_id": "...", "examiner": "<login>",
     "kind": "mark" | "rating" | "finalise" | "reopen",
     "item": 3, "done": true,            # mark only
     "rating": 4,                        # rating only
     "reason": null,                     # required for reopen and for anything after a finalise
     "checklist_hash": "<sha256 hex>", "wall_time": "2026-06-01T09:30:12.250000+00:00",
     "recording_offset_s": 312.25,       # seconds into the attempt's recording, or null
     "seq": 7}                           # per examiner per attempt, increasing on the station

``event_id`` is the idempotency key: the same event may arrive any number of times, in any order; an
event_id seen again with a different content is an error. Marks are append-only: a correction is a new
event. Merge rule, per examiner: events are replayed in (seq, wall_time, event_id) order; a mark sets
``marks[item]`` to ``done``; a rating sets the rating; a finalise signs the sheet; a reopen unsigns it.
Once an examiner has finalised, every later event of theirs must carry a reason; such events are applied
and listed in ``corrections``; one without a reason is not applied and is listed in ``rejected``.

Proof: a station's upload carries, beside each event's fields, ``"proof": {"key_id", "sig"}``: the Ed25519
signature of the event (``examiner_keys.signing_bytes``) by the examiner's tablet key, unlocked by their PIN when
they signed in. The server takes the examiner from the proof's credential, never from the ``examiner`` text
alone (checklists/examiner_keys.py). The proof is not part of the event: the same event has the same content
with or without it (journals written before proofs existed read as before; their events have none).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

KINDS = ("mark", "rating", "finalise", "reopen")
_HASH_RE = re.compile(r"^[0-9a-f]{64}\Z")


class MarkEventError(ValueError):
    """A mark event (or a set of them) breaks the format; the message starts with the field's name."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name



def _text(name: str, value: Any, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise MarkEventError(name, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise MarkEventError(name, "empty")
    return value


def _int(name: str, value: Any, *, nullable: bool = False, minimum: int | None = None) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MarkEventError(name, f"must be an integer, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise MarkEventError(name, f"must be at least {minimum}, got {value}")
    return value


def parse_wall_time(value: str) -> datetime:
    """An ISO-8601 time with a UTC offset of zero, as an aware datetime."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise MarkEventError("wall_time", f"not an ISO-8601 time: {value!r}") from None
    if when.tzinfo is None or when.utcoffset() != UTC.utcoffset(None):
        raise MarkEventError("wall_time", f"must be UTC (with Z or +00:00): {value!r}")
    return when


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class MarkEvent:
    event_id: str
    attempt_id: str
    station_id: str
    examiner: str
    kind: str
    item: int | None
    done: bool | None
    rating: int | None
    reason: str | None
    checklist_hash: str
    wall_time: str
    recording_offset_s: float | None
    seq: int

    def __post_init__(self) -> None:
        try:
            parsed = uuid.UUID(self.event_id) if isinstance(self.event_id, str) else None
        except ValueError:
            parsed = None
        if parsed is None or str(parsed) != self.event_id or parsed.version != 4:
            raise MarkEventError("event_id", f"must be a lowercase UUID4 string, got {self.event_id!r}")
        for name in ("attempt_id", "station_id", "examiner"):
            _text(name, getattr(self, name))
        if self.kind not in KINDS:
            raise MarkEventError("kind", f"must be one of {', '.join(KINDS)}, got {self.kind!r}")
        _int("item", self.item, nullable=True, minimum=1)
        if self.done is not None and not isinstance(self.done, bool):
            raise MarkEventError("done", f"must be true or false, not {type(self.done).__name__}")
        _int("rating", self.rating, nullable=True)
        _text("reason", self.reason, nullable=True)
        if not isinstance(self.checklist_hash, str) or not _HASH_RE.match(self.checklist_hash):
            raise MarkEventError("checklist_hash", "must be 64 lowercase hex digits (sha256)")
        if not isinstance(self.wall_time, str):
            raise MarkEventError("wall_time", f"must be a string, not {type(self.wall_time).__name__}")
        parse_wall_time(self.wall_time)
        offset = self.recording_offset_s
        if offset is not None:
            if isinstance(offset, bool) or not isinstance(offset, int | float):
                raise MarkEventError("recording_offset_s", f"must be a number, not {type(offset).__name__}")
            if isinstance(offset, int) and offset > 1e9 or not math.isfinite(offset) or offset < 0:  # no float overflow
                raise MarkEventError("recording_offset_s", f"must be a finite number >= 0, got {offset}")
            object.__setattr__(self, "recording_offset_s", float(offset))
        _int("seq", self.seq, minimum=0)
        if self.kind == "mark":
            if self.item is None:
                raise MarkEventError("item", "required for a mark")
            if self.done is None:
                raise MarkEventError("done", "required for a mark")
        elif self.item is not None or self.done is not None:
            raise MarkEventError("item" if self.item is not None else "done", f"must be null for {self.kind}")
        if self.kind == "rating":
            if self.rating is None:
                raise MarkEventError("rating", "required for a rating")
        elif self.rating is not None:
            raise MarkEventError("rating", f"must be null for {self.kind}")
        if self.kind == "reopen" and self.reason is None:
            raise MarkEventError("reason", "required for reopen")

    @classmethod
    def new(
        cls,
        *,
        attempt_id: str,
        station_id: str,
        examiner: str,
        kind: str,
        checklist_hash: str,
        seq: int,
        item: int | None = None,
        done: bool | None = None,
        rating: int | None = None,
        reason: str | None = None,
        recording_offset_s: float | None = None,
        wall_time: str | None = None,
        event_id: str | None = None,
    ) -> MarkEvent:
        """A fresh event: a new UUID4 and the current UTC time unless given."""
        return cls(
            event_id=event_id or str(uuid.uuid4()),
            attempt_id=attempt_id,
            station_id=station_id,
            examiner=examiner,
            kind=kind,
            item=item,
            done=done,
            rating=rating,
            reason=reason,
            checklist_hash=checklist_hash,
            wall_time=wall_time or utc_now_iso(),
            recording_offset_s=recording_offset_s,
            seq=seq,
        )

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MarkEvent:
        """Strict: every key present, no unknown key, right types; else MarkEventError naming the field."""
        if not isinstance(d, dict):
            raise MarkEventError("event", f"must be a JSON object, not {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        for key in d:
            if key not in names:
                raise MarkEventError(str(key), "unknown field")
        for name in names:
            if name not in d:
                raise MarkEventError(name, "missing")
        return cls(**{name: d[name] for name in names})

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def when(self) -> datetime:
        return parse_wall_time(self.wall_time)

    def order_key(self) -> tuple[int, datetime, str]:
        return (self.seq, self.when, self.event_id)


# The wire format's keys, in order: every JSON mark event has exactly these.
WIRE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(MarkEvent))


@dataclass
class ExaminerSheet:
    """One examiner's marks on one attempt, derived from their events."""

    examiner: str
    checklist_hash: str
    marks: dict[int, bool] = field(default_factory=dict)
    rating: int | None = None
    finalised: bool = False
    history: list[MarkEvent] = field(default_factory=list)  # every applied event, in merge order
    corrections: list[MarkEvent] = field(default_factory=list)  # applied events after a finalise
    rejected: list[MarkEvent] = field(default_factory=list)  # after a finalise without a reason: not applied
    ever_finalised: bool = False

    def refusal(self, event: MarkEvent) -> str | None:
        """Why this sheet would not apply the event next, or None if it would."""
        if self.ever_finalised and event.reason is None:
            return "reason: required after the checklist was finalised"
        if event.kind == "finalise" and self.finalised:
            return "kind: already finalised"
        if event.kind == "reopen" and not self.finalised:
            return "kind: not finalised, nothing to reopen"
        return None

    def apply(self, event: MarkEvent) -> None:
        """Apply the next event in merge order (the caller has ordered them)."""
        if self.refusal(event) is not None:
            self.rejected.append(event)
            return
        if self.ever_finalised:
            self.corrections.append(event)
        self.history.append(event)
        if event.kind == "mark":
            assert event.item is not None and event.done is not None
            self.marks[event.item] = event.done
        elif event.kind == "rating":
            self.rating = event.rating
        elif event.kind == "finalise":
            self.finalised = True
            self.ever_finalised = True
        else:
            self.finalised = False


def dedup(events: Iterable[MarkEvent]) -> list[MarkEvent]:
    """One copy of each event_id; an event_id with two different contents is an error."""
    seen: dict[str, MarkEvent] = {}
    for event in events:
        known = seen.get(event.event_id)
        if known is None:
            seen[event.event_id] = event
        elif known != event:
            raise MarkEventError("event_id", f"{event.event_id} seen twice with different content")
    return list(seen.values())


def merge(events: Iterable[MarkEvent]) -> dict[str, ExaminerSheet]:
    """The sheets of one attempt, keyed by examiner; the same for any interleaving or duplication."""
    unique = sorted(dedup(events), key=lambda e: (e.examiner, *e.order_key()))
    attempts = {e.attempt_id for e in unique}
    if len(attempts) > 1:
        raise MarkEventError("attempt_id", f"events of several attempts merged together: {sorted(attempts)}")
    hashes = {e.checklist_hash for e in unique}
    if len(hashes) > 1:
        raise MarkEventError("checklist_hash", "events of one attempt made against different checklist versions")
    sheets: dict[str, ExaminerSheet] = {}
    for event in unique:
        sheet = sheets.get(event.examiner)
        if sheet is None:
            sheet = sheets[event.examiner] = ExaminerSheet(event.examiner, event.checklist_hash)
        sheet.apply(event)
    return sheets
