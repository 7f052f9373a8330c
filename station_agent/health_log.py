"""The station's health warnings as events with a beginning and an end, for the attempt page's timeline.

Every couple of seconds the warnings of the health report (live_status.warnings_of: camera lost or frozen,
microphone silent, disk low, upload behind ...) are compared with the events still open: a new warning opens an
event, a warning gone ends it. Events live in ``<data>/state/health-events.db`` (fsynced commits) and are sent
to ``PUT /api/stations/{code}/health-events`` (the format: media/health_events.py) until the server has them,
so an outage or a restart delays them and loses none. A restart ends the events the last run left open at the
time they were last seen, and opens an ``agent_started`` event: the review page then shows that the agent was
down, and since when it is back. Times are the station's wall clock, as the marks' `wall_time`, so that the
page places both on one timeline.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from sqlalchemy import text

from media.health_events import MAX_EVENTS, MAX_TEXT, HealthEvent, batch, path, time_text

from . import station_clock
from .live_status import warnings_of
from .local_db import make_engine

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from .config import AgentConfig
    from .reports import Reports

log = logging.getLogger(__name__)

OBSERVE_S = 2.0
SEND_S = 5.0
SEEN_EVERY_S = 10.0  # how often an open event's "last seen" time is written (its end after a crash)

SCHEMA = """CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, code TEXT NOT NULL, text TEXT NOT NULL, attempt_id TEXT,
    started_at TEXT NOT NULL, ended_at TEXT, last_seen TEXT NOT NULL, sent INTEGER NOT NULL DEFAULT 0)"""


class HealthLog:
    def __init__(self, path: Path) -> None:
        self.engine = make_engine(path)
        with self.engine.begin() as c:
            c.execute(text(SCHEMA))
        self._seen_at: datetime | None = None

    def open_events(self) -> dict[str, str]:
        """code -> event id of the events not ended."""
        with self.engine.begin() as c:
            rows = c.execute(text("SELECT code, id FROM events WHERE ended_at IS NULL")).all()
        return {r.code: r.id for r in rows}

    def restarted(self, now: datetime, attempt_id: str | None) -> None:
        """End what the last run left open (at its last sighting) and record this start."""
        with self.engine.begin() as c:
            c.execute(text("UPDATE events SET ended_at = last_seen, sent = 0 WHERE ended_at IS NULL"))
            at = time_text(now)
            c.execute(text("INSERT INTO events (id, code, text, attempt_id, started_at, ended_at, last_seen) "
                           "VALUES (:id, 'agent_started', 'Агент станции запущен', :a, :t, :t, :t)"),
                      {"id": uuid.uuid4().hex, "a": attempt_id, "t": at})

    def observe(self, warnings: list[dict[str, str]], attempt_id: str | None, now: datetime) -> None:
        """Open an event per new warning code, end the events whose warning is gone."""
        at = time_text(now)
        current = {w["code"]: w["text"][:MAX_TEXT] for w in warnings}
        opened = self.open_events()
        seen = self._seen_at is None or (now - self._seen_at).total_seconds() >= SEEN_EVERY_S
        if set(current) == set(opened) and not seen:
            return
        with self.engine.begin() as c:
            for code, event_id in opened.items():
                if code not in current:
                    c.execute(text("UPDATE events SET ended_at = :t, last_seen = :t, sent = 0 WHERE id = :id"),
                              {"t": at, "id": event_id})
            for code, what in current.items():
                if code not in opened:
                    c.execute(text("INSERT INTO events (id, code, text, attempt_id, started_at, last_seen) "
                                   "VALUES (:id, :code, :text, :a, :t, :t)"),
                              {"id": uuid.uuid4().hex, "code": code, "text": what, "a": attempt_id, "t": at})
            if seen:
                c.execute(text("UPDATE events SET last_seen = :t WHERE ended_at IS NULL"), {"t": at})
                self._seen_at = now

    def unsent(self) -> list[HealthEvent]:
        with self.engine.begin() as c:
            rows = c.execute(text("SELECT id, code, text, attempt_id, started_at, ended_at FROM events "
                                  "WHERE sent = 0 ORDER BY started_at LIMIT :n"), {"n": MAX_EVENTS}).all()
        return [HealthEvent(r.id, r.code, r.text, r.attempt_id, datetime.fromisoformat(r.started_at),
                            datetime.fromisoformat(r.ended_at) if r.ended_at else None) for r in rows]

    def mark_sent(self, events: list[HealthEvent]) -> None:
        """Sent as they were: an event ended meanwhile stays unsent (its end goes next time)."""
        with self.engine.begin() as c:
            for ev in events:
                end = time_text(ev.ended_at) if ev.ended_at is not None else None  # as stored: time_text
                c.execute(text("UPDATE events SET sent = 1 WHERE id = :id AND ended_at IS :end"),
                          {"id": ev.id, "end": end})


class HealthSender:
    def __init__(self, hl: HealthLog, server_url: str, station_id: str, token: str) -> None:
        self.log = hl
        self.url = server_url.rstrip("/") + path(station_id)
        self.token = token
        self.last_error: str | None = None

    async def send_once(self, http: aiohttp.ClientSession) -> int:
        sent = 0
        while events := await asyncio.to_thread(self.log.unsent):
            async with http.put(self.url, json=batch(events),
                                headers={"Authorization": f"Bearer {self.token}"}) as response:
                if response.status != 200:
                    raise RuntimeError(f"PUT {self.url}: HTTP {response.status} {(await response.text())[:200]}")
            await asyncio.to_thread(self.log.mark_sent, events)
            sent += len(events)
            if len(events) < MAX_EVENTS:
                break
        self.last_error = None
        return sent

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:
                try:
                    await self.send_once(http)
                except (aiohttp.ClientError, TimeoutError, RuntimeError, OSError) as exc:
                    if str(exc) != self.last_error:
                        log.warning("health events: %s", exc)
                    self.last_error = str(exc)
                await asyncio.sleep(SEND_S)


async def observe_loop(reports: Reports, hl: HealthLog) -> None:
    def attempt_id() -> str | None:
        current = reports.attempts.current
        return current.attempt_id if current else None

    await asyncio.to_thread(hl.restarted, station_clock.now(), attempt_id())
    while True:
        try:
            current = attempt_id()
            await asyncio.to_thread(hl.observe, warnings_of(reports.health()), current, station_clock.now())
        except Exception:  # noqa: BLE001 - the log must not stop the agent
            log.exception("health events")
        await asyncio.sleep(OBSERVE_S)


def loops(cfg: AgentConfig, reports: Reports, state_dir: Path) -> list[Coroutine[Any, Any, None]]:
    """Observe always (kept locally); send when the agent has a server."""
    hl = HealthLog(state_dir / "health-events.db")
    out = [observe_loop(reports, hl)]
    if cfg.server_url and cfg.token:
        out.append(HealthSender(hl, cfg.server_url, cfg.station_id, cfg.token).run())
    return out
