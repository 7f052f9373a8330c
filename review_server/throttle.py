"""Login throttling, and one audit row per burst of refusals.

Throttling is keyed so that a stranger's failures slow the stranger, not the account's owner:
- per (account, address): the first `free_failures` failures since that pair's last success cost nothing; then
  each next attempt must wait `first_delay_s`, doubling with every failure, up to the window;
- per address: `max_per_ip` failures inside the window, and every login from that address waits until the
  oldest of them leaves the window.

An attempt is counted before its password is compared: `reserve` writes it as a failure, under a lock per
address (PostgreSQL: a transaction-scoped advisory lock; SQLite: every transaction begins IMMEDIATE, db.py), and
`settle` turns it into a success. So a hundred parallel logins whose bodies arrive late see each other's attempts
and cannot all slip past the check, as they could when failures were written after the comparison.

Refusals that repeat (a throttled address hammering the login, a station sending refused marks) would append
an audit row each, so anyone could grow the audit log without limit. `note_burst` writes one row when a burst
starts and counts the rest in `audit_bursts`; the next burst's row carries the previous burst's count.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from . import audit
from .models import AuditBurst, LoginAttempt, utcnow

_LOCK_CLASS = 0x0516  # pg_advisory_xact_lock(class, hashtext(key)): the two-key space, apart from audit's lock


def lock_key(s: Session, key: str) -> None:
    """Serialise transactions that work on `key` (PostgreSQL; on SQLite every write transaction is serial)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:c, hashtext(:k))"), {"c": _LOCK_CLASS, "k": key})


@dataclass(frozen=True)
class Verdict:
    attempt_id: int | None  # the reserved attempt; None when refused
    retry_after_s: int = 0
    reason: str = ""  # "account" (this pair waits) or "address" (the address is over its ceiling)

    @property
    def refused(self) -> bool:
        return self.attempt_id is None


@dataclass
class LoginThrottle:
    free_failures: int
    max_per_ip: int
    window_s: int
    first_delay_s: float = 2.0
    _purged_at: float = field(default=0.0, repr=False)

    def delay_s(self, failures: int) -> float:
        """How long after the last failure a pair with this many failures must wait."""
        if failures < self.free_failures:
            return 0.0
        return min(float(self.window_s), self.first_delay_s * 2.0 ** (failures - self.free_failures))

    def reserve(self, s: Session, login: str, ip: str) -> Verdict:
        login, ip = login[:64], ip[:64]
        lock_key(s, "login-ip:" + ip)
        now = utcnow()
        since = now - dt.timedelta(seconds=self.window_s)
        self._purge(s, now)
        failed = (LoginAttempt.success.is_(False), LoginAttempt.at > since)
        per_ip = s.execute(select(func.count(), func.min(LoginAttempt.at)).where(LoginAttempt.ip == ip, *failed)).one()
        if per_ip[0] >= self.max_per_ip:
            wait = (per_ip[1] + dt.timedelta(seconds=self.window_s) - now).total_seconds()
            return Verdict(None, max(1, math.ceil(wait)), "address")
        pair = (LoginAttempt.login == login, LoginAttempt.ip == ip)
        last_ok = s.scalar(select(func.max(LoginAttempt.at)).where(*pair, LoginAttempt.success.is_(True)))
        streak = select(func.count(), func.max(LoginAttempt.at)).where(*pair, *failed)
        if last_ok is not None:
            streak = streak.where(LoginAttempt.at > last_ok)
        failures, last = s.execute(streak).one()
        wait = (last + dt.timedelta(seconds=self.delay_s(failures)) - now).total_seconds() if failures else 0.0
        if wait > 0:
            return Verdict(None, max(1, math.ceil(wait)), "account")
        row = LoginAttempt(login=login, ip=ip, success=False, at=now)
        s.add(row)
        s.flush()
        return Verdict(row.id)

    @staticmethod
    def settle(s: Session, attempt_id: int, success: bool) -> None:
        if success:
            row = s.get(LoginAttempt, attempt_id)
            if row is not None:
                row.success = True

    def _purge(self, s: Session, now: dt.datetime) -> None:
        """Forget attempts far older than the window, at most once a window per process (the table must not
        grow with every login for ever)."""
        if time.monotonic() - self._purged_at < self.window_s and self._purged_at:
            return
        self._purged_at = time.monotonic()
        s.execute(delete(LoginAttempt).where(LoginAttempt.at < now - dt.timedelta(seconds=2 * self.window_s)))


def note_burst(s: Session, key: str, quiet_s: float, actor: str, action: str, target: str,
               details: dict[str, Any] | None = None) -> bool:
    """Count one refusal of the burst `key`; write an audit row only if it starts a new burst (none before, or
    the last refusal more than quiet_s ago). Returns whether a row was written."""
    lock_key(s, "burst:" + key)
    now = utcnow()
    row = s.get(AuditBurst, key[:200])
    if row is not None and (now - row.last_at).total_seconds() <= quiet_s:
        row.count += 1
        row.last_at = now
        return False
    details = dict(details or {})
    if row is not None:
        details["previous_burst"] = {"count": row.count, "first_at": row.first_at.isoformat(),
                                     "last_at": row.last_at.isoformat()}
        row.first_at, row.last_at, row.count, row.action = now, now, 1, action
    else:
        s.add(AuditBurst(key=key[:200], action=action, first_at=now, last_at=now, count=1))
    details["burst"] = f"repeats within {quiet_s:g} s are counted, not logged"
    audit.append(s, actor, action, target, details)
    return True


def burst_count(s: Session, key: str) -> int:
    row = s.get(AuditBurst, key[:200])
    return 0 if row is None else row.count
