"""Append-only audit log with a SHA-256 hash chain.

Row n stores prev_hash (row n-1's hash, or GENESIS) and hash = SHA-256(prev_hash || canonical JSON of
its content). Changing, removing or reordering any row breaks the chain at that row; `verify` finds the
first such row. Appends are serialised (PostgreSQL: a transaction-scoped advisory lock; SQLite: every
transaction begins IMMEDIATE, see db.py) and the UNIQUE prev_hash constraint makes a fork impossible.
Write the audit record in the same transaction as the action it records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from .models import AuditEvent

GENESIS = "0" * 64
_LOCK_KEY = 0x05CE_A0D1  # pg_advisory_xact_lock key for the audit chain

# Actions (kept as constants so the audit act can list them).
LOGIN = "login"
LOGIN_FAILED = "login.failed"
LOGIN_THROTTLED = "login.throttled"
LOGOUT = "logout"
RECORDING_VIEW = "recording.view"
MEDIA_DOWNLOAD = "media.download"
MARK_CORRECTION = "mark.correct"
FINALISE = "attempt.finalise"
REOPEN = "attempt.reopen"
EXPORT = "archive.export"
DELETE = "recording.delete"
USER_ADD = "user.add"
USER_DISABLE = "user.disable"
STATION_ADD = "station.add"
STATION_TOKEN_ISSUE = "station.token.issue"
STATION_TOKEN_REVOKE = "station.token.revoke"
PERSONAL_VIEW = "candidate.personal.view"
CPR_FIGURES = "attempt.cpr_figures"  # a station's CPR figures report stored or replaced


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def row_hash(prev_hash: str, seq: int, at: str, actor: str, action: str, target: str, details: Any) -> str:
    content = {"seq": seq, "at": at, "actor": actor, "action": action, "target": target, "details": details}
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(content)).hexdigest()


def append(
    session: Session, actor: str, action: str, target: str = "", details: dict[str, Any] | None = None
) -> AuditEvent:
    """Add one event at the end of the chain (inside the caller's transaction)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    last = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    details = json.loads(canonical(details or {}))  # exactly what the JSON column will give back
    event = AuditEvent(
        seq=seq,
        at=at,
        actor=actor[:200],
        action=action,
        target=target[:300],
        details=details,
        prev_hash=prev,
        hash=row_hash(prev, seq, at, actor[:200], action, target[:300], details),
    )
    session.add(event)
    session.flush()
    return event


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str = ""
    head: str = GENESIS  # hash of the last good row: keep it elsewhere to notice a cut-off tail later

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "head": self.head,
        }


def verify(session: Session) -> VerifyResult:
    """Walk the chain from the start; report the first row whose link or hash does not hold."""
    prev = GENESIS
    expected_seq = 1
    checked = 0
    rows = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()
    for ev in rows:
        if ev.seq != expected_seq:
            return VerifyResult(False, checked, ev.seq, f"row {expected_seq} is missing (next row is {ev.seq})", prev)
        if ev.prev_hash != prev:
            reason = f"row {ev.seq}: prev_hash does not match row {ev.seq - 1}"
            return VerifyResult(False, checked, ev.seq, reason, prev)
        actual = row_hash(ev.prev_hash, ev.seq, ev.at, ev.actor, ev.action, ev.target, ev.details)
        if actual != ev.hash:
            return VerifyResult(False, checked, ev.seq, f"row {ev.seq}: content does not match its hash", prev)
        prev = ev.hash
        expected_seq += 1
        checked += 1
    return VerifyResult(True, checked, head=prev)
