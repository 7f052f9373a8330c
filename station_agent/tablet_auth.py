"""Tablet sign-in: throttled, counted before the PIN is compared, and sessions that end.

- An attempt is counted as a failure when it is taken, before its PIN is compared, with no await between the
  check and the count (the agent is one event loop): parallel sign-ins whose bodies arrive late see each other
  and cannot all be tried. A right PIN takes its count back.
- A stranger's failures slow the stranger: per (examiner, address) FREE_FAILURES are free, then each next try
  waits FIRST_DELAY_S, doubling per failure up to WINDOW_S; per address, MAX_PER_ADDRESS failures inside the
  window and every sign-in from it waits. Per examiner, MAX_PER_EXAMINER failures from all addresses together
  (a PIN is short: this bounds guessing it); then that examiner waits, the others do not.
- At most CHECKS_AT_ONCE PINs are checked at once (Argon2id takes memory), CHECKS_WAITING more wait; beyond that
  a sign-in is answered at once (503) instead of piling up.
- A session is a random token in the cookie; the agent keeps its hash with the examiner's unlocked key (memory
  only). Logout removes it; it ends with the examiner's credential (the end of the exam day) or after
  SESSION_MAX_S at the latest, and with the agent process.
- Memory stays bounded: names not on the roster share one counter, counters idle for a window are dropped, at
  most MAX_TRACKED counters and MAX_SESSIONS sessions are kept (the oldest go first).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import station_clock
from .roster import Roster, Unlocked

FREE_FAILURES = 5
FIRST_DELAY_S = 2.0
WINDOW_S = 15 * 60.0
MAX_PER_ADDRESS = 20
MAX_PER_EXAMINER = 10
CHECKS_AT_ONCE = 2
CHECKS_WAITING = 16
SESSION_MAX_S = 12 * 3600
MAX_TRACKED = 4096
MAX_SESSIONS = 64
UNKNOWN = "?"  # every name not on the roster counts here


class LoginRefused(Exception):
    def __init__(self, status: int, message: str, retry_after_s: int = 0) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after_s = status, message, retry_after_s


@dataclass
class _Count:
    times: deque[float] = field(default_factory=deque)  # failures inside the window (monotonic)
    streak: int = 0  # failures since the last success (pairs)
    last: float = 0.0

    def recent(self, now: float) -> int:
        while self.times and now - self.times[0] > WINDOW_S:
            self.times.popleft()
        return len(self.times)


@dataclass
class _Ticket:
    counts: tuple[_Count, ...]
    at: float


class LoginGuard:
    def __init__(self) -> None:
        self.counts: OrderedDict[tuple[str, ...], _Count] = OrderedDict()
        self.checking = 0

    def _count(self, key: tuple[str, ...], now: float) -> _Count:
        count = self.counts.pop(key, None)
        if count is None:
            count = _Count()
            while len(self.counts) >= MAX_TRACKED:  # the least recently used goes
                self.counts.popitem(last=False)
        self.counts[key] = count
        return count

    def expire(self, now: float) -> None:
        """Drop counters idle for a whole window (they would count nothing)."""
        for key in [k for k, c in self.counts.items() if now - c.last > WINDOW_S]:
            del self.counts[key]

    @staticmethod
    def delay_s(streak: int) -> float:
        return 0.0 if streak < FREE_FAILURES else min(WINDOW_S, FIRST_DELAY_S * 2.0 ** (streak - FREE_FAILURES))

    def take(self, examiner: str, address: str) -> _Ticket:
        """Count a sign-in before its PIN is compared, or refuse it (LoginRefused). No await in here."""
        now = time.monotonic()
        if len(self.counts) > MAX_TRACKED // 2:
            self.expire(now)
        pair = self._count(("pair", examiner, address), now)
        per_address = self._count(("address", address), now)
        per_examiner = self._count(("examiner", examiner), now)
        for count, limit, what in ((per_address, MAX_PER_ADDRESS, "с этого устройства"),
                                   (per_examiner, MAX_PER_EXAMINER, "для этого логина")):
            if count.recent(now) >= limit:
                wait = count.times[0] + WINDOW_S - now
                raise LoginRefused(429, f"слишком много неверных попыток {what}, подождите", math.ceil(wait))
        if pair.streak and now - pair.last > WINDOW_S:
            pair.streak = 0
        wait = pair.last + self.delay_s(pair.streak) - now
        if wait > 0:
            raise LoginRefused(429, f"слишком много неверных попыток, подождите {math.ceil(wait)} с", math.ceil(wait))
        if self.checking >= CHECKS_AT_ONCE + CHECKS_WAITING:
            raise LoginRefused(503, "слишком много входов одновременно, повторите через секунду", 1)
        for count in (pair, per_address, per_examiner):
            count.times.append(now)
            count.last = now
        pair.streak += 1
        return _Ticket((pair, per_address, per_examiner), now)

    @staticmethod
    def succeeded(ticket: _Ticket) -> None:
        """A right PIN: its attempt is not a failure after all, and the pair starts afresh."""
        pair = ticket.counts[0]
        pair.streak = 0
        for count in ticket.counts:
            if ticket.at in count.times:
                count.times.remove(ticket.at)


@dataclass
class TabletSession:
    examiner: str
    key_id: str
    key: object  # Ed25519PrivateKey
    expires_at: datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TabletAuth:
    """The roster, the sign-in guard and the live sessions of one station's tablets."""

    def __init__(self, roster: Roster) -> None:
        self.roster = roster
        self.guard = LoginGuard()
        self.sessions: OrderedDict[str, TabletSession] = OrderedDict()
        self._checks = asyncio.Semaphore(CHECKS_AT_ONCE)

    async def login(self, examiner: str, pin: str, address: str) -> tuple[str, TabletSession]:
        """(cookie token, session) for a right PIN; LoginRefused otherwise (401 wrong, 429 throttled, 503 busy)."""
        name = examiner if self.roster.knows(examiner) else UNKNOWN
        ticket = self.guard.take(name, address)  # counted before anything is awaited
        self.guard.checking += 1
        try:
            async with self._checks:
                unlocked = await asyncio.to_thread(self.roster.unlock, examiner, pin) if name != UNKNOWN else None
        finally:
            self.guard.checking -= 1
        if unlocked is None:
            raise LoginRefused(401, "неверный логин или PIN")
        self.guard.succeeded(ticket)
        return self._open(unlocked)

    def _open(self, unlocked: Unlocked) -> tuple[str, TabletSession]:
        expires = min(unlocked.valid_until, station_clock.now() + timedelta(seconds=SESSION_MAX_S))
        token = secrets.token_urlsafe(32)
        while len(self.sessions) >= MAX_SESSIONS:
            self.sessions.popitem(last=False)
        session = TabletSession(unlocked.login, unlocked.key_id, unlocked.key, expires)
        self.sessions[_hash(token)] = session
        return token, session

    def session(self, token: str | None) -> TabletSession | None:
        if not token or len(token) > 200:
            return None
        key = _hash(token)
        found = self.sessions.get(key)
        if found is not None and found.expires_at <= station_clock.now():
            del self.sessions[key]
            return None
        return found

    def logout(self, token: str | None) -> None:
        if token:
            self.sessions.pop(_hash(token), None)
