"""Readiness checks the server asks for before the exam day (review_server/readiness.py; the wire format and the
channel: media/readiness_report.py).

The agent keeps one request open to the server (`GET .../readiness/next`, a long poll): the server answers it as
soon as an admin presses "check". The agent then refuses if an attempt runs or starts within `GUARD_S` (the exam
comes first), else makes a test recording of the asked length on the station's real cameras and microphone
(`<data>/readiness/readiness-<id>/`, never under `recordings/`, so the exam's upload queue never sees it), measures
it (readiness_probe.py), uploads it over tus through its own queue with the check's id in the metadata, and
reports. The agent's lock is held while the sources are open: no attempt can begin (and open the same devices)
during those seconds; a technician's hand start waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from media.manifest import MANIFEST_NAME, read_manifest
from media.readiness_report import DiskResult, FragmentRef, Refusal, Report, UploadResult
from media.recorder import Recorder, RecorderConfig, tap_sources
from media.sources import SourceError

from . import readiness_probe
from .attempts import PREROLL_S, AttemptRunner
from .config import AgentConfig
from .health import CameraWatch, MicWatch, SourceWatch
from .lifecycle import Attempt, ExamClock, active_attempt
from .recording import Recording
from .upload_queue import DONE, FAILED, UploadQueue
from .uploader import Uploader

log = logging.getLogger(__name__)

WAIT_S = 25  # the long poll's length (the server's MAX_WAIT_S)
RETRY_S = 5.0  # after the server could not be reached
GUARD_S = 30.0  # no check when an attempt starts within this long (plus the recording's length)
UPLOAD_TIMEOUT_S = 120.0
KEEP_LOCAL = 3  # the latest test recordings stay on the room PC for a technician to look at


def planned(attempts: list[Attempt], now: datetime) -> tuple[float, int]:
    """Seconds of recording the schedule still plans from `now` (each attempt from its preroll), and how many
    attempts."""
    seconds, count = 0.0, 0
    for a in attempts:
        if a.ends_at <= now:
            continue
        start = max(now, a.reading_starts_at - timedelta(seconds=PREROLL_S))
        seconds += (a.ends_at - start).total_seconds()
        count += 1
    return seconds, count


def refusal(current: Attempt | None, attempts: list[Attempt], now: datetime, seconds: float) -> Refusal | None:
    """Why no test recording of `seconds` can be made now: an attempt running (`current`, or one the schedule says
    runs), or one starting before the test would be over with a margin; the seconds are to its end, or its start."""
    running = current or active_attempt(attempts, now)
    if running is not None:
        return Refusal("attempt_running", running.attempt_id, running.phase_at(now)[0],
                       round(max(0.0, (running.ends_at - now).total_seconds()), 1))
    soon = active_attempt(attempts, now, PREROLL_S + GUARD_S + seconds)
    if soon is None:
        return None
    starts = soon.reading_starts_at - timedelta(seconds=PREROLL_S)
    return Refusal("attempt_soon", soon.attempt_id, "scheduled", round(max(0.0, (starts - now).total_seconds()), 1))


class Readiness:
    def __init__(self, cfg: AgentConfig, clock: ExamClock, attempts: AttemptRunner, recording: Recording,
                 scheduled: Callable[[], list[Attempt]], lock: asyncio.Lock) -> None:
        assert cfg.server_url and cfg.token  # only with a server
        self.cfg, self.clock, self.attempts, self.recording = cfg, clock, attempts, recording
        self.scheduled, self.lock = scheduled, lock
        self.folder = cfg.data_dir / "readiness"
        self.base = f"{cfg.server_url}/api/stations/{cfg.station_id}/readiness"
        self.headers = {"Authorization": f"Bearer {cfg.token}"}

    # -- the channel ---------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Poll the server for checks, for as long as the agent runs."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=WAIT_S + 15)
        warned = False
        async with aiohttp.ClientSession(headers=self.headers, timeout=timeout) as http:
            while True:
                try:
                    async with http.get(f"{self.base}/next", params={"wait": str(WAIT_S)}) as r:
                        if r.status == 204:
                            warned = False
                            continue
                        if r.status != 200:
                            raise RuntimeError(f"HTTP {r.status}: {(await r.text())[:200]}")
                        check = (await r.json())["check"]
                    warned = False
                    await self.handle(http, check)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the server away, an old server: ask again later
                    if not warned:
                        log.warning("readiness: %s/next: %s", self.base, exc)
                        warned = True
                    await asyncio.sleep(RETRY_S)

    async def _post(self, http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> None:
        async with http.post(f"{self.base}/{path}", json=body, timeout=aiohttp.ClientTimeout(total=30)) as r:
            if r.status >= 300:
                raise RuntimeError(f"{path}: HTTP {r.status}: {(await r.text())[:300]}")

    async def _report(self, http: aiohttp.ClientSession, check_id: int, report: Report) -> None:
        """Send the report, again on a network failure (the server times the check out after a few minutes)."""
        deadline = time.monotonic() + 120
        while True:
            body = report.to_json()
            body["agent_time"] = datetime.now(UTC).isoformat(timespec="milliseconds")  # the system clock, now
            try:
                await self._post(http, f"{check_id}/report", body)
                return
            except (aiohttp.ClientError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("readiness %d: report: %s; again in %.0f s", check_id, exc, RETRY_S)
                await asyncio.sleep(RETRY_S)

    # -- one check -----------------------------------------------------------------------------------------------
    async def handle(self, http: aiohttp.ClientSession, check: dict[str, Any]) -> None:
        check_id, seconds, key = int(check["id"]), float(check["seconds"]), str(check["recording"])
        folder = self.folder / key
        log.info("readiness %d: asked for a %.0f s test recording", check_id, seconds)
        async with self.lock:  # decided and recorded between two ticks: no attempt begins meanwhile
            refusal = self.refusal(seconds)
            if refusal is None:
                with contextlib.suppress(Exception):  # only the page's progress line
                    await self._post(http, f"{check_id}/progress", {"state": "recording"})
                recorded = await self._record(folder, key, seconds)
        if refusal is not None:
            log.info("readiness %d: refused (%s)", check_id, refusal.code)
            await self._report(http, check_id, Report(agent_time=datetime.now(UTC), refused=refusal))
            return
        sampler, failures, error = recorded
        with contextlib.suppress(Exception):
            await self._post(http, f"{check_id}/progress", {"state": "uploading"})
        report = await asyncio.to_thread(self._measure, folder, sampler, failures, error)
        upload = await self._upload(folder, check_id) if report.upload is not None else None
        if upload is not None:
            report = Report(**{**report.__dict__, "upload": upload})
        await self._report(http, check_id, report)
        await asyncio.to_thread(self._tidy)

    def refusal(self, seconds: float) -> Refusal | None:
        current = self.attempts.current or self.recording.attempt
        return refusal(current, self.attempts.store.merged(self.scheduled()), self.clock.now(), seconds)

    async def _record(self, folder: Path, key: str, seconds: float) \
            -> tuple[readiness_probe.Sampler, list[str], str | None]:
        """The test recording on the station's sources, watched as an exam's is; (sampler, failures, error)."""
        cfg = self.cfg
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(folder)  # a check taken again after an agent restart starts over
        recorder = Recorder(RecorderConfig(out_dir=folder, videos=list(cfg.cameras), audio=cfg.microphone,
                                           width=cfg.width, height=cfg.height, fps=cfg.fps, station=cfg.station_name,
                                           recording_id=key))
        try:
            await asyncio.to_thread(recorder.start)
        except (SourceError, OSError) as exc:
            return readiness_probe.Sampler(SourceWatch(), cfg), list(recorder.failures), str(exc)
        tracks = read_manifest(folder).header["tracks"]
        watch = SourceWatch({t["id"]: CameraWatch(t["id"], t["source"]) for t in tracks})
        if tracks and tracks[0]["audio"] is not None:
            watch.mic = MicWatch(tracks[0]["audio"]["source"])
        tap_sources(recorder, watch.observe)
        sampler = readiness_probe.Sampler(watch, cfg)
        try:
            await asyncio.sleep(max(0.0, recorder.origin - time.monotonic()))  # the warm-up is not recorded
            end = time.monotonic() + seconds
            watch.sample(cfg.frozen_s, cfg.silence_s, cfg.silence_dbfs)  # drop what came during the warm-up
            sampler.sample()
            while time.monotonic() < end and not recorder.stopped:
                await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
                sampler.sample()
        finally:
            stats = await asyncio.to_thread(recorder.stop, "completed")
        error = None if recorder.stop_reason == "completed" else f"the recording stopped: {recorder.stop_reason}"
        return sampler, list(stats.get("failures", [])), error

    def _measure(self, folder: Path, sampler: readiness_probe.Sampler, failures: list[str],
                 error: str | None) -> Report:
        """The report without the upload's outcome (runs in a thread: the sync check decodes the recording)."""
        cfg = self.cfg
        planned_s, count = planned(self.attempts.store.merged(self.scheduled()), self.clock.now())
        fragments: tuple[FragmentRef, ...] = ()
        recorded_s = 0.0
        if (folder / MANIFEST_NAME).exists():
            manifest = read_manifest(folder)
            fragments = tuple(FragmentRef(f.track, f.seq, f.sha256, f.size) for f in manifest.fragments)
            recorded_s = max((f.end for f in manifest.fragments if f.kind == "media" and f.end is not None),
                             default=0.0)
        self.folder.mkdir(parents=True, exist_ok=True)
        disk = DiskResult(free_bytes=shutil.disk_usage(self.folder).free, reserve_bytes=cfg.reserve_bytes,
                          recorded_bytes=sum(f.size for f in fragments), planned_s=round(planned_s, 1),
                          planned_attempts=count)
        sync = None
        if fragments:
            try:
                sync = readiness_probe.sync(folder)
            except Exception as exc:  # noqa: BLE001 - a recording the checker cannot read: not measured
                log.warning("readiness: sync check of %s: %s", folder, exc)
        return Report(agent_time=datetime.now(UTC), error=error, seconds=round(recorded_s, 2),
                      failures=tuple(failures)[-20:],
                      cameras=tuple(readiness_probe.cameras(cfg, folder, sampler, failures)),
                      microphone=readiness_probe.microphone(cfg, folder, sampler, failures), sync=sync, disk=disk,
                      upload=UploadResult(fragments=fragments) if fragments else None)

    async def _upload(self, folder: Path, check_id: int) -> UploadResult:
        """Upload the test recording over tus (its own queue), until the server has confirmed every hash."""
        cfg = self.cfg
        assert cfg.server_url and cfg.token
        started = time.monotonic()
        queue = UploadQueue(folder.with_suffix(".queue.db"))
        try:
            await asyncio.to_thread(queue.add_recording_folder, folder)
            uploader = Uploader(queue, cfg.server_url, cfg.token, bandwidth_bps=cfg.bandwidth_bps,
                                backoff_max_s=5.0, extra_metadata={"readiness": str(check_id)})
            stop = asyncio.Event()
            task = asyncio.create_task(uploader.run(stop))
            deadline = started + UPLOAD_TIMEOUT_S
            while time.monotonic() < deadline and (await asyncio.to_thread(queue.stats))["length"]:
                await asyncio.sleep(0.2)
            stop.set()
            await task
            items = await asyncio.to_thread(queue.items)
        finally:
            queue.close()
        fragments = tuple(FragmentRef(i.track, i.seq, i.sha256, i.size) for i in items)
        failed = [i for i in items if i.state == FAILED]
        pending = [i for i in items if i.state not in (DONE, FAILED)]
        error = None
        if failed:
            error = f"{failed[0].file}: {failed[0].last_error}"
        elif pending:
            error = (f"{len(pending)} fragments not confirmed within {UPLOAD_TIMEOUT_S:.0f} s"
                     + (f": {uploader.last_error}" if uploader.last_error else ""))
        return UploadResult(fragments=fragments, error=error, seconds=round(time.monotonic() - started, 2))

    def _tidy(self) -> None:
        """Keep the latest few test recordings on the room PC."""
        folders = sorted((p for p in self.folder.glob("readiness-*") if p.is_dir()),
                         key=lambda p: int(p.name.rsplit("-", 1)[1]) if p.name.rsplit("-", 1)[1].isdigit() else 0)
        for old in folders[:-KEEP_LOCAL]:
            shutil.rmtree(old, ignore_errors=True)
            old.with_suffix(".queue.db").unlink(missing_ok=True)
            for extra in ("-wal", "-shm"):
                Path(f"{old.with_suffix('.queue.db')}{extra}").unlink(missing_ok=True)
