"""Who may sign in on the station's tablet, offline too: the examiners' roster for this station and day.

With a server, the roster is the server's (``GET /api/stations/{code}/roster``, review_server/tablet_credentials.py),
fetched every ROSTER_POLL_S and kept in ``<data>/state/roster.json``, so that sign-in works through a network
outage with the last roster fetched. Each entry holds the examiner's signing key wrapped under their PIN
(checklists/examiner_keys.py): the PIN is stored nowhere, and a right PIN unwraps the key that signs the
examiner's marks. Without a server (a demo, `osce agent marking`), the examiners and PINs come from the agent's
own configuration: each PIN is kept only as an Argon2id hash, and marks are signed with a key made at start
(there is no server to check them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from checklists import examiner_keys
from checklists.examiner_keys import RosterEntry
from media.durable import write_atomic

from . import station_clock

log = logging.getLogger(__name__)

ROSTER_POLL_S = 30.0
LOCAL_DAY = timedelta(hours=24)  # a local (no server) sign-in lasts at most this long


def _pin_hasher() -> PasswordHasher:
    # Argon2id at OWASP's minimum (19 MiB, 2 passes): a sign-in on the room PC stays well under a second.
    return PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


@dataclass(frozen=True)
class Unlocked:
    """A signed-in examiner's key, for that session only (memory, never disk)."""

    login: str
    key_id: str
    key: Ed25519PrivateKey
    valid_until: datetime


@dataclass(frozen=True)
class _LocalEntry:
    pin_hash: str  # Argon2id
    key_id: str
    key: Ed25519PrivateKey


class Roster:
    """The examiners who may sign in now. `unlock` is slow on purpose (Argon2id): call it off the event loop."""

    def __init__(self, entries: list[RosterEntry] | None = None, local: dict[str, _LocalEntry] | None = None,
                 source: str = "none") -> None:
        self.entries = list(entries or [])
        self.local = dict(local or {})
        self.source = source  # "server" | "cache" | "pins" | "none"
        self.fetched_at: str | None = None

    @classmethod
    def from_pins(cls, pins: dict[str, str], station: str) -> Roster:
        """The agent's own examiners (no server): PINs of at least 6 digits, kept hashed."""
        hasher = _pin_hasher()
        local = {}
        for login, pin in pins.items():
            if not examiner_keys.PIN_RE.fullmatch(pin):
                raise ValueError(f"examiner PINs: {login}: a PIN is {examiner_keys.MIN_PIN_DIGITS} to 12 digits")
            key_id, key = examiner_keys.throwaway(login, station)
            local[login] = _LocalEntry(hasher.hash(pin), key_id, key)
        return cls(local=local, source="pins")

    @classmethod
    def from_file(cls, path: Path, station: str) -> Roster:
        """The last roster fetched from the server (an empty one if there is none yet)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.error("roster %s unreadable: %s", path, exc)
            return cls()
        roster = cls(_entries(data, station), source="cache")
        roster.fetched_at = data.get("fetched_at") if isinstance(data, dict) else None
        return roster

    def knows(self, login: str) -> bool:
        return login in self.local or any(e.login == login for e in self.entries)

    def logins(self) -> list[str]:
        return sorted({*self.local, *(e.login for e in self.entries)})

    def unlock(self, login: str, pin: str) -> Unlocked | None:
        """The examiner's key if the PIN is theirs and their credential is good now; else None."""
        now = station_clock.now()
        local = self.local.get(login)
        if local is not None:
            try:
                _pin_hasher().verify(local.pin_hash, pin)
            except (VerificationError, InvalidHashError):
                return None
            return Unlocked(login, local.key_id, local.key, now + LOCAL_DAY)
        for entry in self.entries:
            start, end = entry.window
            if entry.login == login and start <= now < end:
                key = entry.unlock(pin)
                if key is not None:
                    return Unlocked(login, entry.key_id, key, end)
        return None


def _entries(data: Any, station: str) -> list[RosterEntry]:
    out = []
    raw = data.get("examiners") if isinstance(data, dict) else None
    for obj in raw if isinstance(raw, list) else []:
        try:
            entry = RosterEntry.from_json(obj)
        except ValueError as exc:
            log.warning("roster: entry skipped: %s", exc)
            continue
        if entry.station == station:
            out.append(entry)
    return out


class RosterSync:
    """Fetches the station's roster from the server into `roster` (in place) and its cache file."""

    def __init__(self, roster: Roster, server_url: str, station: str, token: str, path: Path) -> None:
        self.roster, self.station, self.token, self.path = roster, station, token, path
        self.url = f"{server_url.rstrip('/')}/api/stations/{station}/roster"
        self.last_error: str | None = None

    async def fetch_once(self, http: Any) -> int:
        async with http.get(self.url, headers={"Authorization": f"Bearer {self.token}"}) as response:
            if response.status != 200:
                raise RuntimeError(f"GET {self.url}: HTTP {response.status}")
            data = await response.json()
        entries = _entries(data, self.station)
        fetched_at = station_clock.now().isoformat(timespec="seconds")
        body = {"station": self.station, "fetched_at": fetched_at, "examiners": [e.to_json() for e in entries]}
        await asyncio.to_thread(write_atomic, self.path, json.dumps(body, ensure_ascii=False).encode("utf-8"))
        self.roster.entries, self.roster.source, self.roster.fetched_at = entries, "server", fetched_at
        self.last_error = None
        return len(entries)

    async def run(self, interval_s: float = ROSTER_POLL_S) -> None:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:
                started = time.monotonic()
                try:
                    await self.fetch_once(http)
                except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError, OSError) as exc:
                    if str(exc) != self.last_error:  # offline: the cached roster goes on serving sign-in
                        log.warning("roster: %s (signing in with the roster of %s)", exc, self.roster.fetched_at)
                    self.last_error = str(exc)
                await asyncio.sleep(max(1.0, interval_s - (time.monotonic() - started)))
