"""The attempt lifecycle on the exam clock: which attempt runs, its phases and cues, its start and end.

Every tick the attempt in its reading or performing phase (from the schedule, or started by hand) becomes the
current one and is recorded (`Recording`); its log gets its header, phases and cues. When it is over (time up,
stopped by hand) its recording is ended and it is closed with ``attempt_done``. An attempt whose end passed while
the agent was not running (its log has no ``attempt_done``) is closed as soon as the agent sees that, the same way
as on time, with a ``closed_after_restart`` event saying when it was noticed. The tablet's marking page follows
the current attempt and stays on the last one until the next begins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checklists.model import Checklist

from . import station_clock
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
    unclosed_attempts,
)
from .recording import Recording

if TYPE_CHECKING:
    from .cpr_analysis import CprStation
    from .marking_host import MarkingHost

log = logging.getLogger(__name__)

CUE_LATE_S = 5.0  # a cue this late (e.g. after a restart) is not played
CLOCK_STEP_LOG_S = 0.5  # a step of the system clock this large is logged
# Recording starts this long before the reading phase, so that the recorder's warm-up (media.recorder.WARMUP_S)
# is over when the candidate comes in; an attempt started by hand begins reading this long after the request.
PREROLL_S = 2.0


class AttemptRunner:
    def __init__(self, clock: ExamClock, recordings: Path, store: StateStore, recording: Recording,
                 checklist: Checklist, station_name: str, warn_before_end_s: float, fail: Callable[[str], None], *,
                 marking: MarkingHost | None = None, cpr: CprStation | None = None) -> None:
        self.clock, self.recordings, self.store, self.recording = clock, recordings, store, recording
        self.checklist, self.station_name, self.warn_before_end_s = checklist, station_name, warn_before_end_s
        self.fail, self.marking, self.cpr = fail, marking, cpr
        self.current: Attempt | None = None
        self.phase: str | None = None
        self.fired: set[str] = set()
        self.cues: list[dict[str, Any]] = []  # the last cues played, for the clock page
        # Attempts begun before this process started and never closed: closed once their end has passed.
        self.unclosed: set[str] = set(unclosed_attempts(recordings))
        self._marking_failed: str | None = None

    def log_of(self, attempt: Attempt) -> AttemptLog:
        return AttemptLog(self.recordings / attempt.attempt_id)

    async def step(self, scheduled: list[Attempt]) -> None:
        """One tick: begin, continue or end the attempt the clock says runs now."""
        if self.current is None:  # a step of the system clock is taken up between attempts only
            step = station_clock.follow()
            if abs(step) >= CLOCK_STEP_LOG_S:
                log.warning("the system clock was stepped by %+.3f s; taken up between attempts", step)
        now = self.clock.now()
        attempts = self.store.merged(scheduled)
        active = active_attempt(attempts, now, PREROLL_S)
        if self.unclosed and self.current is None:
            await self._close_after_restart(attempts, now, active)
        if self.current is not None:
            self.current = next((a for a in attempts if a.attempt_id == self.current.attempt_id), self.current)
            if active is None or active.attempt_id != self.current.attempt_id:
                await self._finish(self.current, now)
        if self.current is None and active is not None:
            self._begin(active, now)
            await self._switch_marking(active)
        if self.current is not None:
            self._phase_and_cues(self.current, now)
            await self.recording.keep(self.current)

    def _begin(self, attempt: Attempt, now: datetime) -> None:
        self.current, alog = attempt, self.log_of(attempt)
        phase = attempt.phase_at(now)[0]
        if alog.exists:  # the agent was restarted during this attempt
            self.phase = phase
            self.fired = {c for c, at in due_cues(attempt, now, self.warn_before_end_s)
                          if (now - at).total_seconds() > CUE_LATE_S}
            alog.write("agent_resumed", phase=phase, exam_time=iso(now))
        else:
            self.phase, self.fired = None, set()
            alog.write("attempt", **attempt.to_json(), station_name=self.station_name,
                       checklist_title=self.checklist.title, checklist_hash=self.checklist.content_hash)
        if attempt.attempt_id not in self.store.attempts:
            self.store.put(attempt)
        log.info("attempt %s (candidate %s): %s", attempt.attempt_id, attempt.candidate, phase)

    async def _switch_marking(self, attempt: Attempt) -> None:
        if self.marking is None or self._marking_failed == attempt.attempt_id:
            return
        started_local = attempt.reading_starts_at - timedelta(seconds=self.clock.offset_s)
        try:
            await self.marking.switch(attempt.attempt_id, attempt.candidate, started_local)
        except (ValueError, OSError) as exc:  # another checklist version's marks, the port taken
            self._marking_failed = attempt.attempt_id
            self.fail(f"marking page for {attempt.attempt_id}: {exc}")

    def _phase_and_cues(self, attempt: Attempt, now: datetime) -> None:
        alog = self.log_of(attempt)
        phase, remaining = attempt.phase_at(now)
        if phase != self.phase:
            self.phase = phase
            alog.write("phase", phase=phase, exam_time=iso(now), remaining_s=round(remaining, 1))
        for cue, at in due_cues(attempt, now, self.warn_before_end_s):
            if cue in self.fired:
                continue
            self.fired.add(cue)
            if (now - at).total_seconds() <= CUE_LATE_S:
                entry = {"seq": (self.cues[-1]["seq"] + 1) if self.cues else 1, "cue": cue, "text": CUES[cue],
                         "at": iso(at), "attempt_id": attempt.attempt_id}
                self.cues = [*self.cues[-19:], entry]
                alog.write("cue", cue=cue, text=CUES[cue], exam_time=iso(at))

    async def _finish(self, attempt: Attempt, now: datetime, late: bool = False) -> None:
        self._phase_and_cues(attempt, max(now, attempt.ends_at))
        await self.recording.end_attempt(attempt)
        self.log_of(attempt).write("attempt_done", ended_at=iso(attempt.ends_at),
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
                self.fail(f"attempt {attempt_id}: its log has no attempt header; left open")
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
            self.fired = {c for c, _ in due_cues(attempt, now, self.warn_before_end_s)}  # not played late
            await self._finish(attempt, now, late=True)
            closed = attempt
        if closed is not None and active is None and self.marking is not None and self.marking.attempt_id is None:
            await self._switch_marking(closed)  # the examiners can still finish its sheets, as after an end on time

    # -- by hand (the technician's API); the caller holds the agent's lock -----------------------------------
    def start_by_hand(self, body: dict[str, Any], station_id: str, checklist_name: str) -> Attempt:
        """A new attempt starting now (reading after the preroll); the next tick begins it."""
        if self.current is not None:
            raise ScheduleError(f"attempt {self.current.attempt_id} is in progress")
        now = self.clock.now()
        limits = self.checklist.time_limits
        stamp = now.strftime("%Y%m%dT%H%M%S")
        candidate = body.get("candidate")
        raw = {"attempt_id": body.get("attempt_id") or f"{station_id}-{stamp}-{candidate}",
               "candidate": candidate, "station_id": station_id,
               "checklist": body.get("checklist") or checklist_name,
               "reading_starts_at": iso(now + timedelta(seconds=PREROLL_S)), "origin": "manual",
               "reading_s": body.get("reading_s", limits.reading_s),
               "performing_s": body.get("performing_s", limits.performing_s)}
        attempt = Attempt.from_json(raw, "body")
        if attempt.attempt_id in self.store.attempts or (self.recordings / attempt.attempt_id).exists():
            raise ScheduleError(f"body.attempt_id: {attempt.attempt_id} was already recorded")
        self.store.put(attempt)
        return attempt

    def stop_by_hand(self) -> Attempt:
        """The current attempt, stopped now; the next tick ends it."""
        if self.current is None:
            raise ScheduleError("no attempt in progress")
        stopped = replace(self.current, stopped_at=self.clock.now())
        self.store.put(stopped)
        return stopped

    def clock_state(self) -> dict[str, Any]:
        """What the room's clock page shows: exam time, phase, time left, the cues played."""
        now = self.clock.now()
        attempt = self.current
        phase, remaining = attempt.phase_at(now) if attempt else ("idle", 0.0)
        return {"exam_time": iso(now), "attempt_id": attempt.attempt_id if attempt else None, "phase": phase,
                "remaining_s": round(remaining, 1), "cues": self.cues}
