"""The station's schedule: a local file until the server provides one, then the server's, polled and cached.

Each answer of the server also sets the exam clock (`ExamClock.observe`); the answer and the clock's offset are
kept in ``<state>/schedule.json`` so that an agent restarted while the server is away still knows the day.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from checklists.model import Checklist
from media.durable import write_atomic

from . import station_clock
from .lifecycle import Attempt, ExamClock, iso, parse_schedule

POLL_S = 30.0


class Schedule:
    def __init__(self, clock: ExamClock, station_id: str, checklist: Checklist, checklist_name: str,
                 state_dir: Path, fail: Callable[[str], None], *, schedule_file: Path | None = None,
                 server_url: str | None = None, token: str | None = None) -> None:
        self.clock, self.station_id, self.checklist_name, self.fail = clock, station_id, checklist_name, fail
        self.limits = checklist.time_limits
        self.cache = state_dir / "schedule.json"
        self.file, self.server_url, self.token = schedule_file, server_url, token
        self.attempts: list[Attempt] = []
        self._file_mtime: float | None = None
        self._load_cache()

    def _parse(self, data: Any, where: str) -> tuple[datetime | None, list[Attempt]]:
        return parse_schedule(data, self.station_id, self.checklist_name, self.limits.reading_s,
                              self.limits.performing_s, where)

    def reload_file(self) -> None:
        """The local file again if it changed, as long as the server has not answered."""
        if self.file is None or self.clock.source == "server":
            return
        try:
            mtime = self.file.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._file_mtime:
            return
        self._file_mtime = mtime
        try:
            _, self.attempts = self._parse(json.loads(self.file.read_text(encoding="utf-8")), str(self.file))
        except (ValueError, OSError) as exc:  # ScheduleError and JSON errors are ValueErrors
            self.fail(f"schedule: {exc}")

    def _load_cache(self) -> None:
        if not self.server_url or not self.cache.is_file():
            return
        try:
            data = json.loads(self.cache.read_text(encoding="utf-8"))
            _, self.attempts = self._parse(data["schedule"], str(self.cache))
            self.clock.use_offset(float(data["offset_s"]), "cached")
        except (ValueError, KeyError, TypeError) as exc:
            self.fail(f"cached schedule: {exc}")

    async def fetch(self, session: aiohttp.ClientSession) -> None:
        url = f"{self.server_url}/api/stations/{self.station_id}/schedule"
        sent = time.monotonic()
        try:
            async with session.get(url, headers={"Authorization": f"Bearer {self.token}"}) as response:
                response.raise_for_status()
                data = await response.json()
            received = time.monotonic()
            server_time, attempts = self._parse(data, url)
        except Exception as exc:  # noqa: BLE001 - network, HTTP or schedule errors: keep the last schedule
            self.fail(f"schedule: {url}: {exc}")
            return
        if server_time is not None:
            self.clock.observe(server_time, sent, received)
        self.attempts = attempts
        body = {"offset_s": self.clock.offset_s, "fetched_at": iso(station_clock.now()), "schedule": data}
        await asyncio.to_thread(write_atomic, self.cache, json.dumps(body, ensure_ascii=False).encode("utf-8"))

    async def run(self) -> None:
        """Poll the server (only when one is configured)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while True:
                await self.fetch(session)
                await asyncio.sleep(POLL_S)
