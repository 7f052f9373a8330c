"""The CPR station's own figures: after each attempt, analyse the CPR camera's recording (and the manikin's
export file when one appears), write the `osce-cpr-figures/1` report beside the recording (the tablet's
marking page shows it) and send it to the server with ``PUT /api/attempts/{id}/cpr-figures``.

Durable: an ended attempt becomes a row of ``<state>/cpr-figures.db`` (SQLite, synchronous=FULL) before
anything else happens, and the row moves through

    analyse -> upload -> [manikin] -> done        (or failed, with the reason kept)

so a server that is away is asked again later (backoff up to `RETRY_MAX_S`) and an agent restart picks
up where it was (a cut-short analysis runs again; it only writes whole files). ``manikin``: the report was
sent with video figures only and the manikin's file is waited for until `manikin_wait_s` after the attempt;
when it appears it is copied into the attempt's folder and the report is made again (the server replaces
the old one, audited).

An attempt recorded in several parts (agent restarts) is analysed over all of them in time order, the time
between parts counted as no data (station_agent/cpr_parts.py).

The analysis runs in a child process (``python -m station_agent.cpr_analysis JOB``) at niceness 10, one
at a time, so it never competes with the recorder (the next attempt may be recording meanwhile) and never
holds the agent's event loop or GIL. Its progress lines go to `status()`.

While an attempt records, `LiveCpr` (station_agent/cpr_live.py) publishes rolling figures as live meta.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, func, or_, select, update
from sqlalchemy.dialects.sqlite import insert

from media import clock as media_clock
from media.durable import write_atomic

from . import station_clock
from .local_db import make_engine

if TYPE_CHECKING:  # the analysis child process imports none of these
    import aiohttp

    from media.recorder import Recorder

    from .config import AgentConfig
    from .cpr_live import LiveCpr
    from .lifecycle import Attempt
    from .live_publisher import LivePublisher

log = logging.getLogger(__name__)

ANALYSE, UPLOAD, MANIKIN, DONE, FAILED = "analyse", "upload", "manikin", "done", "failed"
REPORT_NAME = "cpr_figures.json"
PENDING_NAME = "cpr_figures.pending"  # while it exists without the report, the tablet says the analysis is running
VIDEO_CACHE = "cpr_video.json"  # the video figures, kept so that a late manikin file does not decode again
POLL_S = 1.0
MANIKIN_POLL_S = 2.0
RETRY_S, RETRY_MAX_S = 1.0, 5.0  # a small request: asking often costs nothing
ANALYSE_RETRY_S, ANALYSE_TRIES = 30.0, 3
LONGEST_WAIT_S = max(MANIKIN_POLL_S, RETRY_MAX_S, ANALYSE_RETRY_S)
NICE = 10
MANIKIN_SUFFIXES = (".csv", ".txt", ".tsv")

metadata = MetaData()
jobs = Table(
    "cpr_jobs", metadata,
    Column("attempt_id", String(64), primary_key=True),
    Column("folder", Text, nullable=False),  # <data>/recordings/<attempt_id>
    Column("checklist", String(128), nullable=False),
    Column("track", String(16), nullable=False),
    Column("roi", Text),  # JSON [x, y, w, h] or null
    Column("reading_wall", String(40), nullable=False),  # local UTC wall clock (the recording's clock)
    Column("performing_wall", String(40), nullable=False),
    Column("ended_wall", String(40), nullable=False),
    Column("state", String(8), nullable=False, index=True),
    Column("manikin_file", Text),  # the copy in the attempt's folder, once found
    Column("manikin_source", Text),  # the operator's file it was copied from: one attempt's only
    Column("tries", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("next_at", Float, nullable=False, default=0.0),
    Column("sha256", String(64)),  # of the report last accepted by the server
    Column("updated_at", Float, nullable=False),
)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


class CprJobs:
    """The durable list of attempts whose figures are still to be made or sent."""

    def __init__(self, path: Path) -> None:
        self.engine = make_engine(path)
        metadata.create_all(self.engine)

    def add(self, **row: Any) -> bool:
        """A new job in state analyse (committed before returning); False if the attempt already has one."""
        with self.engine.begin() as conn:
            result = conn.execute(insert(jobs).values(**row, state=ANALYSE, tries=0, next_at=0.0,
                                                      updated_at=time.time()).on_conflict_do_nothing())
            return bool(result.rowcount)

    def get(self, attempt_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.attempt_id == attempt_id)).mappings().first()
            return dict(row) if row else None

    def due(self, now: float) -> dict[str, Any] | None:
        """The oldest job that has something to do now."""
        # A retry time further ahead than any wait means the system clock was set back: due now.
        waited = or_(jobs.c.next_at <= now, jobs.c.next_at > now + LONGEST_WAIT_S)
        query = (select(jobs).where(jobs.c.state.in_((ANALYSE, UPLOAD, MANIKIN)), waited)
                 .order_by(jobs.c.updated_at).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
            return dict(row) if row else None

    def change(self, attempt_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.attempt_id == attempt_id).values(**values, updated_at=time.time()))

    def claimed(self) -> set[str]:
        """Manikin files already taken by an attempt."""
        with self.engine.connect() as conn:
            return set(conn.scalars(select(jobs.c.manikin_source).where(jobs.c.manikin_source.is_not(None))))

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {s: int(n) for s, n in conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state))}


# -- the analysis (in the child process) ------------------------------------------------------


def video_figures(job: dict[str, Any], progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """The video figures of the job's camera track over every recording part of the attempt, in time order
    (station_agent/cpr_parts.py: the time between parts is no data), from the cache when it fits."""
    from media.cpr.motion import analyse_recording
    from media.manifest import ManifestError

    from .cpr_parts import analyse_parts, attempt_parts

    folder = Path(job["folder"])
    performing = datetime.fromisoformat(job["performing_wall"])
    ended = datetime.fromisoformat(job["ended_wall"])
    parts = attempt_parts(folder, performing, ended)
    if not parts:
        return {"estimate": None, "reason": "no_recording", "confidence": 0.0, "track": job["track"]}
    roi = tuple(json.loads(job["roi"])) if job["roi"] else None
    key = {"parts": [[p.name, _iso(o), _iso(e)] for p, o, e in parts], "track": job["track"],
           "performing": _iso(performing), "ended": _iso(ended), "roi": list(roi) if roi else None}
    cache = folder / VIDEO_CACHE
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return cached["video"]
    except (OSError, ValueError, AttributeError):
        pass

    def analyse(part: Path, track: str, start: float, roi: Any, step: Any) -> dict[str, Any]:
        try:
            return analyse_recording(part, track, start, roi, step)
        except (FileNotFoundError, ManifestError) as exc:
            return {"estimate": None, "reason": "no_recording", "confidence": 0.0, "error": str(exc),
                    "track": track, "start_s": start, "frames": 0}

    video = analyse_parts(parts, performing, ended, job["track"], roi, analyse, progress)
    video.update(part=parts[0][0].name, track=job["track"], media_from=_iso(parts[0][1]))
    write_atomic(cache, json.dumps({"key": key, "video": video}, ensure_ascii=False).encode("utf-8"))
    return video


def build_report(job: dict[str, Any], progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """The attempt's `osce-cpr-figures/1` report, written (whole) to <folder>/cpr_figures.json."""
    from media.cpr.figures import check_report, cpr_report, manikin_figures
    from media.cpr.manikin import FeedbackError, align, read_feedback

    from .cpr_parts import no_data_line

    video = video_figures(job, progress)
    manikin = alignment = None
    if job.get("manikin_file"):
        try:
            feedback = read_feedback(Path(job["manikin_file"]))
        except (OSError, FeedbackError) as exc:
            alignment = {"offset_s": None, "method": "none", "confidence": 0.0, "reason": f"unreadable: {exc}"}
        else:
            aligned, alignment = align(feedback, video)
            ok = alignment["offset_s"] is not None
            manikin = manikin_figures(aligned, video.get("start_s", 0.0) if ok else None)
            manikin["file"] = Path(job["manikin_file"]).name
    report = cpr_report(video, manikin, alignment, job["checklist"])
    report["attempt_id"] = job["attempt_id"]
    if (line := no_data_line(video)) is not None:  # beside every item showing video figures
        for lines in report["items"].values():
            if any("(видео)" in x for x in lines):
                lines.append(line)
    check_report(report)
    write_atomic(Path(job["folder"]) / REPORT_NAME, json.dumps(report, ensure_ascii=False, indent=1).encode("utf-8"))
    (Path(job["folder"]) / PENDING_NAME).unlink(missing_ok=True)
    return report


def main(argv: list[str]) -> int:
    """`python -m station_agent.cpr_analysis JOB_JSON`: make one attempt's report, at low priority."""
    with contextlib.suppress(OSError):
        os.nice(NICE)
    job = json.loads(argv[0])
    report = build_report(job, lambda t: print(f"progress {t:.0f}", flush=True))
    video = report["video"] or {}
    print(f"done estimate={video.get('estimate')} rate={video.get('rate_per_min')}", flush=True)
    return 0


# -- the agent's side ---------------------------------------------------------------------------


def find_manikin_file(folder: Path, since: datetime, until: datetime, taken: set[str] | None = None) -> Path | None:
    """The newest manikin export in `folder` written between `since` and `until`, not being written now and
    not `taken` by another attempt."""
    if not folder.is_dir():
        return None
    settled = time.time() - 1.0
    best: tuple[float, Path] | None = None
    for path in folder.iterdir():
        if path.name.startswith(".") or path.suffix.lower() not in MANIKIN_SUFFIXES or not path.is_file() \
                or str(path) in (taken or set()):
            continue
        mtime = path.stat().st_mtime
        if since.timestamp() <= mtime <= min(until.timestamp(), settled) and (best is None or mtime > best[0]):
            best = (mtime, path)
    return None if best is None else best[1]


class CprStation:
    """What the daemon calls: `recording_started`/`recording_stopped` around each part (live figures),
    `attempt_done` when an attempt ends (durable job), and `run()` as a task (analysis and upload)."""

    def __init__(self, cfg: AgentConfig, recordings: Path, state_dir: Path, checklist: str,
                 publisher: Callable[[], LivePublisher | None], fail: Callable[[str], None]) -> None:
        self.cfg, self.recordings, self.checklist = cfg, recordings, checklist
        self.track = f"cam{cfg.cpr_camera}"
        self.jobs = CprJobs(state_dir / "cpr-figures.db")
        self.publisher, self.fail = publisher, fail  # publisher(): the LivePublisher, or None without a server
        self.live: LiveCpr | None = None  # of the part being recorded
        self.current: dict[str, Any] | None = None  # the job being worked on, with its progress
        self.last_error: str | None = None

    # -- live ----------------------------------------------------------------------------------
    def recording_started(self, recorder: Recorder, attempt: Attempt, offset_s: float) -> None:
        """Live figures from this recording part's CPR camera, if live meta goes anywhere."""
        publisher = self.publisher()
        if publisher is None or not self.cfg.cpr_live:
            return
        from media.recorder import tap_sources

        from .cpr_live import LiveCpr

        media_from = station_clock.now() + timedelta(seconds=recorder.origin - media_clock.now())
        performing = attempt.performing_starts_at - timedelta(seconds=offset_s)
        publisher.set_meta(cpr=None)  # not the previous candidate's figures
        self.live = LiveCpr(lambda figures: publisher.set_meta(cpr=figures), self.track, recorder.origin,
                            (performing - media_from).total_seconds(), fps=self.cfg.cpr_live_fps,
                            roi=self.cfg.cpr_roi)
        tap_sources(recorder, self.live.tap)

    def recording_stopped(self) -> None:
        live, self.live = self.live, None
        if live is not None:
            live.close()
            log.info("live CPR: %d pictures analysed, %d dropped, %.1f s CPU", live.frames, live.dropped, live.cpu_s)

    # -- after the attempt ---------------------------------------------------------------------
    def attempt_done(self, attempt: Attempt, offset_s: float) -> None:
        """Durably note that the attempt's figures are to be made (the exam clock is `offset_s` ahead)."""
        local = timedelta(seconds=offset_s)
        folder = self.recordings / attempt.attempt_id
        if not folder.is_dir():
            return
        try:
            write_atomic(folder / PENDING_NAME, b"")
            self.jobs.add(attempt_id=attempt.attempt_id, folder=str(folder), checklist=self.checklist,
                          track=self.track, roi=json.dumps(self.cfg.cpr_roi) if self.cfg.cpr_roi else None,
                          reading_wall=_iso(attempt.reading_starts_at - local),
                          performing_wall=_iso(attempt.performing_starts_at - local),
                          ended_wall=_iso(attempt.ends_at - local))
        except Exception as exc:  # noqa: BLE001 - the attempt is recorded either way; say what is missing
            self.fail(f"CPR figures for {attempt.attempt_id}: cannot queue: {exc}")

    async def run(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while True:
                job = await asyncio.to_thread(self.jobs.due, time.time())
                if job is None:
                    await asyncio.sleep(POLL_S)
                    continue
                try:
                    await self._step(job, session)
                except Exception as exc:  # noqa: BLE001 - the loop goes on; the job is tried again later
                    log.exception("CPR figures")
                    self._error(job, f"{type(exc).__name__}: {exc}", retry_s=ANALYSE_RETRY_S)
                finally:
                    self.current = None

    async def _step(self, job: dict[str, Any], session: aiohttp.ClientSession) -> None:
        attempt_id, state = job["attempt_id"], job["state"]
        self.current = {"attempt_id": attempt_id, "state": state, "progress_s": None}
        if state in (ANALYSE, MANIKIN) and self.cfg.cpr_manikin_dir is not None and not job["manikin_file"]:
            job["manikin_file"] = await asyncio.to_thread(self._claim_manikin, job)
        if state == MANIKIN:
            if job["manikin_file"]:
                self.jobs.change(attempt_id, state=ANALYSE, next_at=0.0)
            elif time.time() > datetime.fromisoformat(job["ended_wall"]).timestamp() + self.cfg.cpr_manikin_wait_s:
                self.jobs.change(attempt_id, state=DONE)
            else:
                self.jobs.change(attempt_id, next_at=time.time() + MANIKIN_POLL_S)
        elif state == ANALYSE:
            await self._analyse(job)
        elif state == UPLOAD:
            await self._upload(job, session)

    def _claim_manikin(self, job: dict[str, Any]) -> str | None:
        since = datetime.fromisoformat(job["reading_wall"])
        until = datetime.fromisoformat(job["ended_wall"]) + timedelta(seconds=self.cfg.cpr_manikin_wait_s)
        folder = self.cfg.cpr_manikin_dir
        assert folder is not None  # only jobs of a station with a manikin folder come here
        found = find_manikin_file(folder, since, until, self.jobs.claimed())
        if found is None:
            return None
        copy = Path(job["folder"]) / f"manikin{found.suffix.lower()}"
        write_atomic(copy, found.read_bytes())  # the operator's file stays where it is
        self.jobs.change(job["attempt_id"], manikin_file=str(copy), manikin_source=str(found))
        log.info("CPR figures for %s: manikin file %s", job["attempt_id"], found)
        return str(copy)

    def _after_report(self, job: dict[str, Any]) -> str:
        """Where a job goes once its current report is made (no server) or sent."""
        waiting = self.cfg.cpr_manikin_dir is not None and not job["manikin_file"]
        return MANIKIN if waiting else DONE

    async def _analyse(self, job: dict[str, Any]) -> None:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "station_agent.cpr_analysis", json.dumps(job, default=str),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert child.stdout is not None and child.stderr is not None
        errors = asyncio.create_task(child.stderr.read())
        last = ""
        try:
            async for line in child.stdout:
                last = line.decode("utf-8", "replace").strip()
                if last.startswith("progress ") and self.current is not None:
                    self.current["progress_s"] = float(last.split()[1])
            code, stderr = await child.wait(), await errors
        except asyncio.CancelledError:  # the agent stops: the job stays in "analyse" and runs again next time
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
            raise
        if code != 0:
            tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit status {code}"]
            self._error(job, f"analysis failed: {tail[0]}", retry_s=ANALYSE_RETRY_S, tries=ANALYSE_TRIES)
            return
        log.info("CPR figures for %s: %s", job["attempt_id"], last)
        state = UPLOAD if self.cfg.server_url else self._after_report(job)
        self.jobs.change(job["attempt_id"], state=state, tries=0, last_error=None, next_at=0.0)

    async def _upload(self, job: dict[str, Any], session: aiohttp.ClientSession) -> None:
        import aiohttp

        attempt_id = job["attempt_id"]
        path = Path(job["folder"]) / REPORT_NAME
        try:
            body = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:  # removed meanwhile: make it again
            self.jobs.change(attempt_id, state=ANALYSE, next_at=0.0)
            return
        url = f"{self.cfg.server_url}/api/attempts/{attempt_id}/cpr-figures"
        headers = {"Authorization": f"Bearer {self.cfg.token}", "Content-Type": "application/json"}
        try:
            async with session.put(url, data=body, headers=headers) as response:
                answer = await response.text()
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._error(job, f"{url}: {exc or type(exc).__name__}", retry_s=None)
            return
        if status == 200:
            sha = json.loads(answer).get("sha256")
            self.jobs.change(attempt_id, state=self._after_report(job), sha256=sha, tries=0, last_error=None)
            log.info("CPR figures for %s sent", attempt_id)
        elif status in (408, 429) or status >= 500:
            self._error(job, f"{url}: HTTP {status}", retry_s=None)
        else:  # refused for good (bad report, another station's attempt): keep the reason
            self._error(job, f"{url}: HTTP {status}: {answer[:300]}", retry_s=None, tries=1)

    def _error(self, job: dict[str, Any], message: str, *, retry_s: float | None, tries: int | None = None) -> None:
        """Note a failure; retry after `retry_s` (None: exponential backoff), or give up after `tries`."""
        count = job["tries"] + 1
        self.last_error = f"{job['attempt_id']}: {message}"
        if tries is not None and count >= tries:
            self.fail(f"CPR figures for {job['attempt_id']}: {message}")
            (Path(job["folder"]) / PENDING_NAME).unlink(missing_ok=True)
            self.jobs.change(job["attempt_id"], state=FAILED, tries=count, last_error=message[:2000])
            return
        delay = retry_s if retry_s is not None else min(RETRY_MAX_S, RETRY_S * 2 ** min(count - 1, 10))
        log.warning("CPR figures for %s: %s; again in %.0f s", job["attempt_id"], message, delay)
        self.jobs.change(job["attempt_id"], tries=count, last_error=message[:2000], next_at=time.time() + delay)

    def status(self) -> dict[str, Any]:
        """For the health report: jobs per state, the one being worked on, the last error."""
        live = self.live
        return {"jobs": self.jobs.counts(), "current": self.current, "last_error": self.last_error,
                "live": None if live is None else {"frames": live.frames, "dropped": live.dropped,
                                                   "cpu_s": round(live.cpu_s, 2), "figures": live.last}}


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
