"""Marks made on the server (the observation room) come back to the station's journal: one source of truth.

Every few seconds ``GET /api/stations/{station}/marks?after=<cursor>`` returns the events the server stored for
this station's attempts since the cursor; they are merged into the journal by event_id (`Journal.add_from_server`:
stored as already synced, so the uploader never sends them back; an event already here is skipped). The
cursor is kept in ``<data>/state/mark-pull.json``; losing it only means pulling again, which changes nothing.
The in-room marking page reads the journal, so it shows these marks on its next refresh.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from checklists.marks import WIRE_FIELDS, MarkEvent, MarkEventError
from media.durable import write_atomic

from .journal import Journal

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from .config import AgentConfig

log = logging.getLogger(__name__)

PULL_S = 2.0
BACKOFF_S = 30.0


class MarkPull:
    def __init__(self, journal: Journal, server_url: str, station_id: str, token: str, state_path: Path,
                 interval_s: float = PULL_S) -> None:
        self.journal = journal
        self.url = f"{server_url.rstrip('/')}/api/stations/{station_id}/marks"
        self.token = token
        self.state_path = state_path
        self.interval_s = interval_s
        self.after = self._load_cursor()
        self.pulled = 0
        self.conflicts: list[str] = []
        self.last_error: str | None = None
        self.last_success_at: float | None = None

    def _load_cursor(self) -> int:
        try:
            after = json.loads(self.state_path.read_text(encoding="utf-8")).get("after", 0)
        except (OSError, ValueError, AttributeError):
            return 0
        return after if isinstance(after, int) and after >= 0 else 0

    def _save_cursor(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_path, json.dumps({"after": self.after}).encode("utf-8"))

    def _merge(self, raw: list[Any]) -> int:
        events = []
        for obj in raw:
            try:
                events.append(MarkEvent.from_json({k: obj.get(k) for k in WIRE_FIELDS}))
            except (MarkEventError, AttributeError) as exc:  # the server checked it; a bad one must not block the rest
                log.warning("mark pull: event skipped: %s", exc)
        new, conflicts = self.journal.add_from_server(events)
        if conflicts:
            self.conflicts = [*self.conflicts, *conflicts][-20:]
            log.error("mark pull: %d event id(s) differ from the journal's: %s", len(conflicts), conflicts[:3])
        return len(new)

    async def pull_once(self, http: aiohttp.ClientSession) -> int:
        """Fetch and merge everything after the cursor; the number of events new to the journal."""
        added = 0
        while True:
            async with http.get(self.url, params={"after": str(self.after)},
                                headers={"Authorization": f"Bearer {self.token}"}) as response:
                if response.status != 200:
                    raise RuntimeError(f"GET {self.url}: HTTP {response.status} {(await response.text())[:200]}")
                body = await response.json()
            added += await asyncio.to_thread(self._merge, body.get("events", []))
            if int(body.get("next", self.after)) != self.after:
                self.after = int(body["next"])
                await asyncio.to_thread(self._save_cursor)
            if not body.get("more"):
                break
        self.pulled += added
        self.last_error, self.last_success_at = None, time.time()
        return added

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                delay = self.interval_s
                try:
                    if await self.pull_once(http):
                        log.info("mark pull: journal has the server's marks up to #%d", self.after)
                except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError, OSError) as exc:
                    if str(exc) != self.last_error:
                        log.warning("mark pull: %s", exc)
                    self.last_error, delay = str(exc), min(BACKOFF_S, self.interval_s * 5)
                await asyncio.sleep(delay)

    def status(self) -> dict[str, Any]:
        return {"after": self.after, "pulled": self.pulled, "conflicts": self.conflicts,
                "last_error": self.last_error, "last_success_at": self.last_success_at}


def loops(cfg: AgentConfig, marks_db: Path, state_dir: Path) -> list[Coroutine[Any, Any, None]]:
    """The daemon's pull loop into the marks journal `marks_db`, when the agent has a server to pull from."""
    if not cfg.server_url or not cfg.token:
        return []
    puller = MarkPull(Journal(marks_db), cfg.server_url, cfg.station_id, cfg.token, state_dir / "mark-pull.json")
    return [puller.run()]
