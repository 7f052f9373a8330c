"""The station agent daemon (`osce agent run --config FILE`): attempts, recording, health, cues, systemd.

`Agent` only wires the parts together and moves them every quarter second on the exam clock: the schedule
(station_agent/schedule.py), the attempt lifecycle (attempts.py), the recording parts (recording.py), uploads
(uploads.py), the reports (reports.py), the marking page, the live publisher and the CPR figures. Each part gets
what it uses, not the `Agent`. HTTP API (bearer token = the station token; see `agent_http.build_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from checklists.loader import ChecklistError, load_checklist
from checklists.model import Checklist
from media import sdnotify

from . import health_log, live_status, mark_pull
from .agent_http import build_app, local_token
from .attempts import AttemptRunner
from .config import AgentConfig, ConfigError, load_config
from .cpr_analysis import CprStation
from .health import FailureLog
from .lifecycle import Attempt, ExamClock, StateStore
from .live_publisher import LivePublisher
from .marking_host import MarkingHost
from .recording import Recording
from .reports import Reports
from .roster import Roster, RosterSync
from .schedule import Schedule
from .tablet_auth import TabletAuth
from .uploads import Uploads

log = logging.getLogger(__name__)

TICK_S = 0.25


def tablet_roster(cfg: AgentConfig, state_dir: Path, failures: FailureLog) -> tuple[Roster, RosterSync | None]:
    """Who may sign in on the tablet: with a server, its roster (synced, cached for offline sign-in); the agent's
    own PINs only without one."""
    if not cfg.server_url or not cfg.token:
        return Roster.from_pins(cfg.pins, cfg.station_id), None
    if cfg.pins:
        failures("exam.pins_file: ignored with a server: examiners sign in with the PINs the server issues "
                 "(osce server tablet issue)")
    path = state_dir / "roster.json"
    cached = Roster.from_file(path, cfg.station_id)
    return cached, RosterSync(cached, cfg.server_url, cfg.station_id, cfg.token, path)


class Agent:
    def __init__(self, cfg: AgentConfig, checklist: Checklist) -> None:
        self.cfg, self.checklist = cfg, checklist
        recordings, state_dir = cfg.data_dir / "recordings", cfg.data_dir / "state"
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.failures = FailureLog()
        self.clock = ExamClock()
        self.token = cfg.token or local_token(cfg.data_dir)
        self.marks_db = cfg.data_dir / "marks.db"
        self.roster_sync: RosterSync | None = None
        self.marking: MarkingHost | None = None
        if cfg.marking:
            roster, self.roster_sync = tablet_roster(cfg, state_dir, self.failures)
            self.marking = MarkingHost(checklist, self.marks_db, TabletAuth(roster), cfg.station_id, cfg.host,
                                       cfg.marking_port, recordings=recordings)
        self.live: LivePublisher | None = None  # the observation room's picture, when a server is configured
        if cfg.server_url and cfg.token:
            self.live = LivePublisher(cfg.server_url, cfg.station_id, cfg.token)
            self.live.set_meta(station_name=cfg.station_name, recording=False, candidate=None)
        checklist_name = Path(cfg.checklist).stem
        self.cpr = CprStation(cfg, recordings, state_dir, checklist_name, lambda: self.live, self.failures) \
            if cfg.cpr_analysis else None
        self.uploads = Uploads(cfg, state_dir / "upload-queue.db", self.marks_db if self.marking else None,
                               self.failures)
        self.schedule = Schedule(self.clock, cfg.station_id, checklist, checklist_name, state_dir, self.failures,
                                 schedule_file=cfg.schedule_file, server_url=cfg.server_url, token=cfg.token)
        self.recording = Recording(cfg, recordings, self.clock, self.uploads, self.failures, live=self.live,
                                   cpr=self.cpr)
        self.attempts = AttemptRunner(self.clock, recordings, StateStore(state_dir / "attempts.json"),
                                      self.recording, checklist, cfg.station_name, cfg.warn_before_end_s,
                                      self.failures, marking=self.marking, cpr=self.cpr)
        self.reports = Reports(cfg.station_id, cfg.station_name, self.attempts, self.recording, self.uploads,
                               self.failures, marking=self.marking, cpr=self.cpr)
        self.lock = asyncio.Lock()  # one tick or hand control at a time
        self.last_tick = time.monotonic()

    @property
    def scheduled(self) -> list[Attempt]:
        return self.schedule.attempts

    async def tick(self) -> None:
        async with self.lock:
            self.last_tick = time.monotonic()
            self.schedule.reload_file()
            self.recording.check_disk()
            await self.attempts.step(self.schedule.attempts)

    # -- hand control (agent_http) ---------------------------------------------------------
    async def start_by_hand(self, body: dict[str, Any]) -> Attempt:
        async with self.lock:
            attempt = self.attempts.start_by_hand(body, self.cfg.station_id, Path(self.cfg.checklist).stem)
        await self.tick()
        return attempt

    async def stop_by_hand(self) -> Attempt:
        async with self.lock:
            stopped = self.attempts.stop_by_hand()
        await self.tick()
        return stopped

    # -- loops -----------------------------------------------------------------------------
    async def tick_loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - the loop (and the watchdog) must go on
                log.exception("tick")
                self.failures(f"agent: {exc}")
            await asyncio.sleep(TICK_S)

    async def watchdog_loop(self, interval: float) -> None:
        while True:
            if time.monotonic() - self.last_tick < max(4 * interval, 30.0):  # the tick loop is not stuck
                sdnotify.notify("WATCHDOG=1")
                state = self.attempts.clock_state()
                sdnotify.notify(f"STATUS={state['phase']} {state['attempt_id'] or ''} "
                                f"disk {self.recording.disk['free_mb']} MB free".strip())
            await asyncio.sleep(interval)

    async def shutdown(self) -> None:
        async with self.lock:
            if self.recording.recorder is not None:
                await self.recording.stop("agent_stopped")
            if self.marking is not None:
                await self.marking.close()


async def serve(agent: Agent) -> None:
    from aiohttp import web

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    agent.uploads.start(agent.recording.recordings)
    runner = web.AppRunner(build_app(agent), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, agent.cfg.host, agent.cfg.port).start()
    for address in runner.addresses:
        print(f"agent: http://{address[0]}:{address[1]}/", flush=True)
    await agent.tick()
    tasks = [asyncio.create_task(agent.tick_loop()), asyncio.create_task(agent.recording.watch_loop())]
    if (interval := sdnotify.watchdog_interval()) is not None:
        tasks.append(asyncio.create_task(agent.watchdog_loop(interval)))
    if agent.cfg.server_url:
        tasks.append(asyncio.create_task(agent.schedule.run()))
    uploader_stop = asyncio.Event()
    if agent.uploads.uploader is not None:
        tasks.append(asyncio.create_task(agent.uploads.uploader.run(uploader_stop)))
    if agent.live is not None:
        tasks.append(asyncio.create_task(agent.live.run()))
    if agent.cpr is not None:
        tasks.append(asyncio.create_task(agent.cpr.run()))
    # The grid's meta (attempt, phase, warnings), marks made on the server back into the journal, health events.
    cfg = agent.cfg
    loops = [*live_status.loops(agent.reports, agent.live),
             *(mark_pull.loops(cfg, agent.marks_db, agent.state_dir) if agent.marking is not None else []),
             *health_log.loops(cfg, agent.reports, agent.state_dir),
             *([agent.roster_sync.run()] if agent.roster_sync is not None else [])]
    tasks += [asyncio.create_task(coroutine) for coroutine in loops]
    sdnotify.notify("READY=1")
    try:
        await stop.wait()
    finally:
        sdnotify.notify("STOPPING=1")
        uploader_stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await agent.shutdown()
        await runner.cleanup()


def run(config_path: Path | None) -> int:
    """`osce agent run`: load the configuration (exit 2 with the file, key and problem if bad) and serve."""
    try:
        cfg = load_config(config_path)
        try:
            checklist = load_checklist(cfg.checklist)
        except ChecklistError as exc:
            raise ConfigError(cfg.file, "exam.checklist", str(exc)) from None
        try:
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(cfg.file, "storage.data_dir", f"cannot create {cfg.data_dir}: {exc.strerror}") from None
    except ConfigError as exc:
        print(f"osce agent: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(Agent(cfg, checklist)))
    return 0
