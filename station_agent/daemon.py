"""The station agent daemon (`osce agent run --config FILE`): attempts, recording, health, cues, systemd.

Every quarter second the agent looks at the exam clock: the attempt in its reading or performing phase
(from the schedule, or started by hand) is recorded into ``<data>/recordings/<attempt_id>/part-N/``; a new
part starts whenever recording has to resume (agent restart, disk space back, a recorder failure), and the
time without media between two parts is written to the attempt's log as a ``gap`` event. Under the disk
reserve the recorder is stopped cleanly. An attempt whose end passed while the agent was not running (its log
has no ``attempt_done``) is closed as soon as the agent sees that, the same way as on time, with a
``closed_after_restart`` event saying when it was noticed. HTTP API (bearer token = the station token; see
`build_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from checklists.loader import ChecklistError, load_checklist
from checklists.model import Checklist
from media import clock as media_clock
from media import sdnotify
from media.durable import write_atomic
from media.manifest import MANIFEST_NAME, close_cut, read_manifest
from media.recorder import Recorder, RecorderConfig, tap_sources
from media.sources import SourceError

from . import health_log, live_status, mark_pull, roster, station_clock
from .config import AgentConfig, ConfigError, load_config
from .health import CameraWatch, MicWatch, SourceWatch, disk_status, problems
from .lifecycle import (
    CUES,
    Attempt,
    AttemptLog,
    ExamClock,
    ScheduleError,
    StateStore,
    active_attempt,
    due_cues,
    iso,
    logged_attempt,
    parse_schedule,
    part_dirs,
    part_media_span,
    unclosed_attempts,
)
from .marking_host import MarkingHost
from .roster import Roster, RosterSync
from .tablet_auth import TabletAuth

log = logging.getLogger(__name__)

TICK_S = 0.25
RETRY_S = 5.0  # after a recorder failed to start or stopped by itself
SCHEDULE_POLL_S = 30.0
QUEUE_FEED_S = 5.0
CUE_LATE_S = 5.0  # a cue this late (e.g. after a restart) is not played
CLOCK_STEP_LOG_S = 0.5  # a step of the system clock this large is logged
# Recording starts this long before the reading phase, so that the recorder's warm-up (media.recorder.WARMUP_S)
# is over when the candidate comes in; an attempt started by hand begins reading this long after the request.
PREROLL_S = 2.0


class Agent:
    def __init__(self, cfg: AgentConfig, checklist: Checklist) -> None:
        self.cfg = cfg
        self.checklist = checklist
        self.recordings = cfg.data_dir / "recordings"
        self.state_dir = cfg.data_dir / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = ExamClock()
        self.store = StateStore(self.state_dir / "attempts.json")
        self.scheduled: list[Attempt] = []
        self._schedule_mtime: float | None = None
        self.current: Attempt | None = None
        # Attempts begun before this process started and never closed: closed once their end has passed.
        self.unclosed: set[str] = set(unclosed_attempts(self.recordings))
        self.phase: str | None = None
        self.fired: set[str] = set()
        self.cues: list[dict[str, Any]] = []
        self.recorder: Recorder | None = None
        self.watch: SourceWatch | None = None
        self.part: int = 0
        self.retry_at = 0.0
        self.disk: dict[str, Any] = disk_status(cfg.data_dir, cfg.reserve_bytes)
        self.sample: dict[str, Any] = {"cameras": [], "microphone": None}
        self.failures: list[str] = []
        self.last_tick = time.monotonic()
        self.lock = asyncio.Lock()
        self.queue: Any = None
        self.uploader: Any = None
        self.live: Any = None  # LivePublisher when a server is configured
        self.upload_note = "no server configured"
        self.token = cfg.token or self._local_token()
        self.marks_db = cfg.data_dir / "marks.db"
        self.marking: MarkingHost | None = None
        self._marking_failed: str | None = None
        self.roster_sync: RosterSync | None = None
        if cfg.marking:
            self.marking = MarkingHost(checklist, self.marks_db, TabletAuth(self._roster()), cfg.station_id, cfg.host,
                                       cfg.marking_port, recordings=self.recordings)
        self.cpr: Any = None  # the CPR station's figures (station_agent/cpr_analysis.py)
        if cfg.cpr_analysis:
            from .cpr_analysis import CprStation

            self.cpr = CprStation(cfg, self.recordings, self.state_dir, Path(cfg.checklist).stem,
                                  lambda: self.live, self._fail)
        self._load_cached_schedule()

    # -- setup -----------------------------------------------------------------------------
    def _roster(self) -> Roster:
        """Who may sign in on the tablet: with a server, its roster (synced, cached for offline sign-in); the
        agent's own PINs only without one."""
        cfg = self.cfg
        if not cfg.server_url or not cfg.token:
            return Roster.from_pins(cfg.pins, cfg.station_id)
        if cfg.pins:
            self._fail("exam.pins_file: ignored with a server: examiners sign in with the PINs the server issues "
                       "(osce server tablet issue)")
        path = self.state_dir / "roster.json"
        cached = Roster.from_file(path, cfg.station_id)
        self.roster_sync = RosterSync(cached, cfg.server_url, cfg.station_id, cfg.token, path)
        return cached

    def _local_token(self) -> str:
        """Without a station token the API still needs one: made once, kept in <data>/api-token (0600)."""
        path = self.cfg.data_dir / "api-token"
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
        token = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        log.info("no station token configured: the API token is in %s", path)
        return token

    def _fail(self, message: str) -> None:
        log.error(message)
        self.failures = [*self.failures[-9:], f"{iso(station_clock.now())} {message}"]

    def setup_upload(self) -> None:
        """The upload queue and uploader, if their modules are installed (they are optional to this module)."""
        try:
            from .journal import Journal
            from .upload_queue import UploadQueue
        except ImportError:
            self.upload_note = "upload modules not installed"
            return
        try:
            self.queue = UploadQueue(self.state_dir / "upload-queue.db")
            if self.cfg.server_url:
                from .uploader import Uploader

                journal = Journal(self.marks_db) if self.marking is not None else None
                self.uploader = Uploader(self.queue, self.cfg.server_url, self.cfg.token, journal=journal,
                                         bandwidth_bps=self.cfg.bandwidth_bps,
                                         delete_after_confirm=self.cfg.delete_after_upload)
                self.upload_note = "uploading"
            else:
                self.upload_note = "queued only: no server configured"
        except Exception as exc:  # noqa: BLE001 - recording must go on without uploads
            self._fail(f"upload: cannot start: {exc}")
            return
        # A part cut short by a crash or a power loss has fragments its manifest lists but the queue never
        # saw (they are queued every few seconds while recording): queue every recording found (idempotent).
        for manifest in sorted(self.recordings.glob(f"*/*/{MANIFEST_NAME}")):
            self._queue_part(manifest.parent)

    def setup_live(self) -> None:
        """The live view for the observation room: the recorder's own packets, sent as they are made."""
        if self.cfg.server_url and self.cfg.token:
            from .live_publisher import LivePublisher

            self.live = LivePublisher(self.cfg.server_url, self.cfg.station_id, self.cfg.token)
            self.live.set_meta(station_name=self.cfg.station_name, recording=False, candidate=None)

    # -- schedule --------------------------------------------------------------------------
    def _parse(self, data: Any, where: str) -> tuple[datetime | None, list[Attempt]]:
        limits = self.checklist.time_limits
        return parse_schedule(data, self.cfg.station_id, Path(self.cfg.checklist).stem, limits.reading_s,
                              limits.performing_s, where)

    def _reload_schedule_file(self) -> None:
        path = self.cfg.schedule_file
        if path is None or self.clock.source == "server":
            return
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._schedule_mtime:
            return
        self._schedule_mtime = mtime
        try:
            _, self.scheduled = self._parse(json.loads(path.read_text(encoding="utf-8")), str(path))
        except (ValueError, OSError) as exc:  # ScheduleError and JSON errors are ValueErrors
            self._fail(f"schedule: {exc}")

    def _load_cached_schedule(self) -> None:
        path = self.state_dir / "schedule.json"
        if not self.cfg.server_url or not path.is_file():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            _, self.scheduled = self._parse(data["schedule"], str(path))
            self.clock.use_offset(float(data["offset_s"]), "cached")
        except (ValueError, KeyError, TypeError) as exc:
            self._fail(f"cached schedule: {exc}")

    async def fetch_schedule(self, session: Any) -> None:
        url = f"{self.cfg.server_url}/api/stations/{self.cfg.station_id}/schedule"
        sent = time.monotonic()
        try:
            async with session.get(url, headers={"Authorization": f"Bearer {self.cfg.token}"}) as response:
                response.raise_for_status()
                data = await response.json()
            received = time.monotonic()
            server_time, attempts = self._parse(data, url)
        except Exception as exc:  # noqa: BLE001 - network, HTTP or schedule errors: keep the last schedule
            self._fail(f"schedule: {url}: {exc}")
            return
        if server_time is not None:
            self.clock.observe(server_time, sent, received)
        self.scheduled = attempts
        body = {"offset_s": self.clock.offset_s, "fetched_at": iso(station_clock.now()), "schedule": data}
        await asyncio.to_thread(write_atomic, self.state_dir / "schedule.json",
                                json.dumps(body, ensure_ascii=False).encode("utf-8"))

    # -- the attempt -----------------------------------------------------------------------
    def attempt_log(self, attempt: Attempt) -> AttemptLog:
        return AttemptLog(self.recordings / attempt.attempt_id)

    async def tick(self) -> None:
        async with self.lock:
            self.last_tick = time.monotonic()
            self._reload_schedule_file()
            self.disk = disk_status(self.cfg.data_dir, self.cfg.reserve_bytes)
            if self.current is None:  # a step of the system clock is taken up between attempts only
                self._follow_system_clock()
            now = self.clock.now()
            attempts = self.store.merged(self.scheduled)
            active = active_attempt(attempts, now, PREROLL_S)
            if self.unclosed and self.current is None:
                await self._close_after_restart(attempts, now, active)
            if self.current is not None:
                self.current = next((a for a in attempts if a.attempt_id == self.current.attempt_id), self.current)
                if active is None or active.attempt_id != self.current.attempt_id:
                    await self._finish(now)
            if self.current is None and active is not None:
                self._begin(active, now)
                await self._switch_marking()
            if self.current is not None:
                self._phase_and_cues(now)
                await self._keep_recording()

    def _begin(self, attempt: Attempt, now: datetime) -> None:
        self.current, alog = attempt, self.attempt_log(attempt)
        phase = attempt.phase_at(now)[0]
        if alog.exists:  # the agent was restarted during this attempt
            self.phase = phase
            self.fired = {c for c, at in due_cues(attempt, now, self.cfg.warn_before_end_s)
                          if (now - at).total_seconds() > CUE_LATE_S}
            alog.write("agent_resumed", phase=phase, exam_time=iso(now))
        else:
            self.phase, self.fired = None, set()
            alog.write("attempt", **attempt.to_json(), station_name=self.cfg.station_name,
                       checklist_title=self.checklist.title, checklist_hash=self.checklist.content_hash)
        if attempt.attempt_id not in self.store.attempts:
            self.store.put(attempt)
        log.info("attempt %s (candidate %s): %s", attempt.attempt_id, attempt.candidate, phase)

    async def _switch_marking(self) -> None:
        attempt = self.current
        if self.marking is None or attempt is None or self._marking_failed == attempt.attempt_id:
            return
        started_local = attempt.reading_starts_at - timedelta(seconds=self.clock.offset_s)
        try:
            await self.marking.switch(attempt.attempt_id, attempt.candidate, started_local)
        except (ValueError, OSError) as exc:  # another checklist version's marks, the port taken
            self._marking_failed = attempt.attempt_id
            self._fail(f"marking page for {attempt.attempt_id}: {exc}")

    def _phase_and_cues(self, now: datetime) -> None:
        attempt, alog = self.current, self.attempt_log(self.current)  # type: ignore[arg-type]
        assert attempt is not None
        phase, remaining = attempt.phase_at(now)
        if phase != self.phase:
            self.phase = phase
            alog.write("phase", phase=phase, exam_time=iso(now), remaining_s=round(remaining, 1))
        for cue, at in due_cues(attempt, now, self.cfg.warn_before_end_s):
            if cue in self.fired:
                continue
            self.fired.add(cue)
            if (now - at).total_seconds() <= CUE_LATE_S:
                entry = {"seq": (self.cues[-1]["seq"] + 1) if self.cues else 1, "cue": cue, "text": CUES[cue],
                         "at": iso(at), "attempt_id": attempt.attempt_id}
                self.cues = [*self.cues[-19:], entry]
                alog.write("cue", cue=cue, text=CUES[cue], exam_time=iso(at))

    def _follow_system_clock(self) -> None:
        step = station_clock.follow()
        if abs(step) >= CLOCK_STEP_LOG_S:
            log.warning("the system clock was stepped by %+.3f s; taken up between attempts", step)

    async def _finish(self, now: datetime, late: bool = False) -> None:
        attempt = self.current
        assert attempt is not None
        self._phase_and_cues(max(now, attempt.ends_at))
        if self.recorder is not None:
            await self._stop_recorder("completed")
        # Parts cut short by a crash get their end line, and every part is queued (both idempotent).
        for part in part_dirs(self.recordings / attempt.attempt_id):
            if close_cut(part, "interrupted", {"closed_at": iso(station_clock.now())}):
                self.attempt_log(attempt).write("part_closed", part=int(part.name[5:]), reason="interrupted")
            self._queue_part(part)
        self.attempt_log(attempt).write("attempt_done", ended_at=iso(attempt.ends_at),
                                        stopped_by_hand=attempt.stopped_at is not None, closed_after_restart=late)
        if self.cpr is not None:
            self.cpr.attempt_done(attempt, self.clock.offset_s)
        self.unclosed.discard(attempt.attempt_id)
        log.info("attempt %s done%s", attempt.attempt_id, " (closed after a restart)" if late else "")
        self.current, self.phase = None, None

    async def _close_after_restart(self, attempts: list[Attempt], now: datetime, active: Attempt | None) -> None:
        """Close the attempts that ended while the agent was not running, as `_finish` does on time."""
        known = {a.attempt_id: a for a in attempts}
        closed: Attempt | None = None
        for attempt_id in sorted(self.unclosed):
            alog = AttemptLog(self.recordings / attempt_id)
            attempt = known.get(attempt_id) or logged_attempt(alog)
            if attempt is None:
                self._fail(f"attempt {attempt_id}: its log has no attempt header; left open")
                self.unclosed.discard(attempt_id)
                continue
            if attempt.phase_at(now)[0] != "done":
                continue  # still running or to come: the tick resumes it
            if attempt_id not in self.store.attempts:
                self.store.put(attempt)
            previous = [e["phase"] for e in alog.read() if e.get("event") == "phase"]
            alog.write("closed_after_restart", ended_at=iso(attempt.ends_at), noticed_at=iso(now),
                       late_s=round((now - attempt.ends_at).total_seconds(), 3), clock=self.clock.source,
                       note="the agent was not running when the attempt's time ended")
            self.current, self.phase = attempt, previous[-1] if previous else None
            self.fired = {c for c, _ in due_cues(attempt, now, self.cfg.warn_before_end_s)}  # not played late
            await self._finish(now, late=True)
            closed = attempt
        if closed is not None and active is None and self.marking is not None and self.marking.attempt_id is None:
            self.current = closed  # the examiners can still finish its sheets, as after an end on time
            await self._switch_marking()
            self.current = None

    # -- recording -------------------------------------------------------------------------
    async def _keep_recording(self) -> None:
        if self.recorder is not None and self.recorder.stopped:  # it stopped by itself: disk full, error
            await self._stop_recorder(self.recorder.stop_reason)
            self.retry_at = time.monotonic() + RETRY_S
        if self.disk["stop"]:
            if self.recorder is not None:
                self._fail(f"disk: {self.disk['free_mb']} MB free under {self.cfg.data_dir}, "
                           f"reserve {self.cfg.reserve_mb} MB: recording stopped")
                await self._stop_recorder("disk_reserve")
            return
        if self.recorder is None and time.monotonic() >= self.retry_at:
            await self._start_part()

    async def _start_part(self) -> None:
        attempt = self.current
        assert attempt is not None
        folder = self.recordings / attempt.attempt_id
        earlier = part_dirs(folder)
        number = int(earlier[-1].name[5:]) + 1 if earlier else 1
        part = folder / f"part-{number}"
        cfg = self.cfg
        recorder = Recorder(RecorderConfig(out_dir=part, videos=list(cfg.cameras), audio=cfg.microphone,
                                           width=cfg.width, height=cfg.height, fps=cfg.fps, station=cfg.station_name,
                                           recording_id=f"{attempt.attempt_id}.part-{number}",
                                           attempt_id=attempt.attempt_id,
                                           live=self.live.attach if self.live is not None else None))
        alog = self.attempt_log(attempt)
        try:
            await asyncio.to_thread(recorder.start)
        except (SourceError, OSError) as exc:
            self._fail(f"recording {part}: {exc}")
            alog.write("part_failed", part=number, message=str(exc))
            with contextlib.suppress(OSError):  # nothing was recorded: the number is used again on the next try
                part.rmdir()
            self.retry_at = time.monotonic() + RETRY_S
            return
        media_from = station_clock.now() + timedelta(seconds=recorder.origin - media_clock.now())
        tracks = read_manifest(part).header["tracks"]
        watch = SourceWatch({t["id"]: CameraWatch(t["id"], t["source"]) for t in tracks})
        if tracks and tracks[0]["audio"] is not None:
            watch.mic = MicWatch(tracks[0]["audio"]["source"])
        tap_sources(recorder, watch.observe)
        if self.cpr is not None:
            self.cpr.recording_started(recorder, attempt, self.clock.offset_s)
        self.recorder, self.watch, self.part = recorder, watch, number
        if self.live is not None:
            self.live.set_meta(candidate=attempt.candidate, recording=True)
        self.sample = {"cameras": [], "microphone": None}
        alog.write("part_started", part=number, folder=part.name, media_from=iso(media_from),
                   failures=list(recorder.failures))
        if earlier:
            _, end, reason = part_media_span(earlier[-1])
            if end is None:
                previous = [e for e in alog.read() if e.get("event") != "part_started"]
                end = datetime.fromisoformat(previous[-1]["wall"]) if previous else media_from
            alog.write("gap", **{"from": iso(end), "to": iso(media_from)},
                       seconds=round((media_from - end).total_seconds(), 3), before_part=number,
                       reason=reason or "agent_restart")
        log.info("recording %s part %d", attempt.attempt_id, number)

    async def _stop_recorder(self, reason: str) -> None:
        recorder, attempt = self.recorder, self.current
        assert recorder is not None
        self.recorder, self.watch = None, None
        stats = await asyncio.to_thread(recorder.stop, reason)
        if self.cpr is not None:
            await asyncio.to_thread(self.cpr.recording_stopped)
        if self.live is not None:
            self.live.set_meta(recording=False)
        if attempt is not None:
            self.attempt_log(attempt).write("part_stopped", part=self.part, reason=recorder.stop_reason,
                                            failures=stats.get("failures", []))
        self._queue_part(recorder.config.out_dir)

    def _queue_part(self, folder: Path) -> None:
        if self.queue is None:
            return
        try:
            self.queue.add_recording_folder(folder)
        except Exception as exc:  # noqa: BLE001 - the folder is queued again later
            self._fail(f"upload queue: {folder}: {exc}")

    # -- hand control ----------------------------------------------------------------------
    async def start_by_hand(self, body: dict[str, Any]) -> Attempt:
        async with self.lock:
            if self.current is not None:
                raise ScheduleError(f"attempt {self.current.attempt_id} is in progress")
            now = self.clock.now()
            limits = self.checklist.time_limits
            stamp = now.strftime("%Y%m%dT%H%M%S")
            candidate = body.get("candidate")
            raw = {"attempt_id": body.get("attempt_id") or f"{self.cfg.station_id}-{stamp}-{candidate}",
                   "candidate": candidate, "station_id": self.cfg.station_id,
                   "checklist": body.get("checklist") or Path(self.cfg.checklist).stem,
                   "reading_starts_at": iso(now + timedelta(seconds=PREROLL_S)), "origin": "manual",
                   "reading_s": body.get("reading_s", limits.reading_s),
                   "performing_s": body.get("performing_s", limits.performing_s)}
            attempt = Attempt.from_json(raw, "body")
            if attempt.attempt_id in self.store.attempts or (self.recordings / attempt.attempt_id).exists():
                raise ScheduleError(f"body.attempt_id: {attempt.attempt_id} was already recorded")
            self.store.put(attempt)
        await self.tick()
        return attempt

    async def stop_by_hand(self) -> Attempt:
        async with self.lock:
            if self.current is None:
                raise ScheduleError("no attempt in progress")
            stopped = replace(self.current, stopped_at=self.clock.now())
            self.store.put(stopped)
        await self.tick()
        return stopped

    # -- reports ---------------------------------------------------------------------------
    def clock_state(self) -> dict[str, Any]:
        now = self.clock.now()
        attempt = self.current
        phase, remaining = attempt.phase_at(now) if attempt else ("idle", 0.0)
        return {"exam_time": iso(now), "attempt_id": attempt.attempt_id if attempt else None, "phase": phase,
                "remaining_s": round(remaining, 1), "cues": self.cues}

    def status(self) -> dict[str, Any]:
        state = self.clock_state()
        attempt = self.current
        state.update(station_id=self.cfg.station_id, station_name=self.cfg.station_name,
                     attempt=attempt.to_json() if attempt else None,
                     recording={"part": self.part, "folder": str(self.recorder.config.out_dir)}
                     if self.recorder else None,
                     marking={"url": self.marking.url, "attempt_id": self.marking.attempt_id,
                              "roster": self._roster_state()} if self.marking else None)
        return state

    def _roster_state(self) -> dict[str, Any]:
        """Who may sign in on the tablet: where the roster came from, its examiners (logins) and when fetched."""
        assert self.marking is not None
        roster = self.marking.tablet.roster
        return {"source": roster.source, "examiners": roster.logins(), "fetched_at": roster.fetched_at}

    def health(self) -> dict[str, Any]:
        recording = self.recorder is not None
        idle_cams = [{"source": c.spec, "state": "idle"} for c in self.cfg.cameras]
        mic = self.cfg.microphone
        report: dict[str, Any] = {
            "station_id": self.cfg.station_id, "exam_time": iso(self.clock.now()), "phase": self.phase or "idle",
            "attempt_id": self.current.attempt_id if self.current else None,
            "recording": {"part": self.part} if recording else None,
            "cameras": self.sample["cameras"] if recording else idle_cams,
            "microphone": (self.sample["microphone"] if recording else {"source": mic.spec, "state": "idle"})
            if mic else None,
            "disk": self.disk, "clock": self.clock.to_json(), "upload": self.upload_status(),
            "failures": (list(self.recorder.failures[-5:]) if self.recorder else []) + self.failures[-5:],
        }
        if self.cpr is not None:
            report["cpr"] = self.cpr.status()
        report["problems"] = problems(report)
        report["ok"] = not report["problems"]
        return report

    def upload_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.upload_note}
        try:
            if self.queue is not None:
                out["queue"] = self.queue.stats()
            if self.uploader is not None:
                out["uploader"] = self.uploader.status()
        except Exception as exc:  # noqa: BLE001 - health must answer even so
            out["error"] = str(exc)
        return out

    # -- loops -----------------------------------------------------------------------------
    async def tick_loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - the loop (and the watchdog) must go on
                log.exception("tick")
                self._fail(f"agent: {exc}")
            await asyncio.sleep(TICK_S)

    async def health_loop(self) -> None:
        last_feed = 0.0
        while True:
            watch = self.watch
            if watch is not None:
                self.sample = watch.sample(self.cfg.frozen_s, self.cfg.silence_s, self.cfg.silence_dbfs)
            if self.recorder is not None and time.monotonic() - last_feed > QUEUE_FEED_S:
                last_feed = time.monotonic()
                await asyncio.to_thread(self._queue_part, self.recorder.config.out_dir)
            await asyncio.sleep(1.0)

    async def watchdog_loop(self, interval: float) -> None:
        while True:
            if time.monotonic() - self.last_tick < max(4 * interval, 30.0):  # the tick loop is not stuck
                sdnotify.notify("WATCHDOG=1")
                state = self.clock_state()
                sdnotify.notify(f"STATUS={state['phase']} {state['attempt_id'] or ''} "
                                f"disk {self.disk['free_mb']} MB free".strip())
            await asyncio.sleep(interval)

    async def schedule_loop(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while True:
                await self.fetch_schedule(session)
                await asyncio.sleep(SCHEDULE_POLL_S)

    async def shutdown(self) -> None:
        async with self.lock:
            if self.recorder is not None:
                await self._stop_recorder("agent_stopped")
            if self.marking is not None:
                await self.marking.close()


async def serve(agent: Agent) -> None:
    from aiohttp import web

    from .agent_http import build_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    agent.setup_upload()
    agent.setup_live()
    runner = web.AppRunner(build_app(agent), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, agent.cfg.host, agent.cfg.port).start()
    for address in runner.addresses:
        print(f"agent: http://{address[0]}:{address[1]}/", flush=True)
    await agent.tick()
    tasks = [asyncio.create_task(agent.tick_loop()), asyncio.create_task(agent.health_loop())]
    if (interval := sdnotify.watchdog_interval()) is not None:
        tasks.append(asyncio.create_task(agent.watchdog_loop(interval)))
    if agent.cfg.server_url:
        tasks.append(asyncio.create_task(agent.schedule_loop()))
    uploader_stop = asyncio.Event()
    if agent.uploader is not None:
        tasks.append(asyncio.create_task(agent.uploader.run(uploader_stop)))
    if agent.live is not None:
        tasks.append(asyncio.create_task(agent.live.run()))
    if agent.cpr is not None:
        tasks.append(asyncio.create_task(agent.cpr.run()))
    # The grid's meta (attempt, phase, warnings) and marks made on the server back into the journal.
    tasks += [asyncio.create_task(loop) for loop in (*live_status.loops(agent), *mark_pull.loops(agent),
                                                     *health_log.loops(agent), *roster.loops(agent))]
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
