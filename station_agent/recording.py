"""The current attempt's recording, in parts: ``<data>/recordings/<attempt_id>/part-N/``.

A new part starts whenever recording has to resume (agent restart, disk space back, a recorder failure), and the
time without media between two parts is written to the attempt's log as a ``gap`` event. Under the disk reserve
the recorder is stopped cleanly. While a part records, its sources are watched (frozen picture, silence) and its
fragments queued for upload every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from media import clock as media_clock
from media.manifest import close_cut, read_manifest
from media.recorder import Recorder, RecorderConfig, tap_sources
from media.sources import SourceError
from media.sources.spec import camera_audio_index

from . import station_clock
from .config import AgentConfig
from .health import CameraWatch, MicWatch, SourceWatch, disk_status
from .lifecycle import Attempt, AttemptLog, ExamClock, iso, part_dirs, part_media_span
from .uploads import Uploads

if TYPE_CHECKING:
    from .cpr_analysis import CprStation
    from .live_publisher import LivePublisher

log = logging.getLogger(__name__)

RETRY_S = 5.0  # after a recorder failed to start or stopped by itself
QUEUE_FEED_S = 5.0


def requested_fps(track: dict[str, Any]) -> float | None:
    """The rate a camera's delivery is held to: what it was asked for, or for a copied stream what it announces."""
    video = track.get("video") or {}
    value = video.get("fps") if video.get("copy") else video.get("fps_requested", video.get("fps"))
    return float(value) if value else None


class Recording:
    def __init__(self, cfg: AgentConfig, recordings: Path, clock: ExamClock, uploads: Uploads,
                 fail: Callable[[str], None], *, live: LivePublisher | None = None,
                 cpr: CprStation | None = None) -> None:
        self.cfg, self.recordings, self.clock, self.uploads, self.fail = cfg, recordings, clock, uploads, fail
        self.live, self.cpr = live, cpr
        self.recorder: Recorder | None = None
        self.attempt: Attempt | None = None  # the attempt the recorder records
        self.watch: SourceWatch | None = None
        self.part = 0
        self.retry_at = 0.0
        self.disk: dict[str, Any] = disk_status(cfg.data_dir, cfg.reserve_bytes)
        self.sample: dict[str, Any] = {"cameras": [], "microphone": None}

    @property
    def folder(self) -> Path | None:
        return self.recorder.config.out_dir if self.recorder is not None else None

    def check_disk(self) -> None:
        self.disk = disk_status(self.cfg.data_dir, self.cfg.reserve_bytes)

    async def keep(self, attempt: Attempt) -> None:
        """Record `attempt`: start a part if none runs (unless under the reserve or waiting to retry)."""
        if self.recorder is not None and self.recorder.stopped:  # it stopped by itself: disk full, error
            await self.stop(self.recorder.stop_reason)
            self.retry_at = time.monotonic() + RETRY_S
        if self.disk["stop"]:
            if self.recorder is not None:
                self.fail(f"disk: {self.disk['free_mb']} MB free under {self.cfg.data_dir}, "
                          f"reserve {self.cfg.reserve_mb} MB: recording stopped")
                await self.stop("disk_reserve")
            return
        if self.recorder is None and time.monotonic() >= self.retry_at:
            await self._start_part(attempt)

    async def _start_part(self, attempt: Attempt) -> None:
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
        alog = AttemptLog(folder)
        try:
            await asyncio.to_thread(recorder.start)
        except (SourceError, OSError) as exc:
            self.fail(f"recording {part}: {exc}")
            alog.write("part_failed", part=number, message=str(exc))
            with contextlib.suppress(OSError):  # nothing was recorded: the number is used again on the next try
                part.rmdir()
            self.retry_at = time.monotonic() + RETRY_S
            return
        media_from = station_clock.now() + timedelta(seconds=recorder.origin - media_clock.now())
        tracks = read_manifest(part).header["tracks"]
        watch = SourceWatch({t["id"]: CameraWatch(t["id"], t["source"], fps_requested=requested_fps(t))
                             for t in tracks})
        mic = cfg.microphone
        if tracks and tracks[0]["audio"] is not None:
            watch.mic = MicWatch(tracks[0]["audio"]["source"], camera=camera_audio_index(mic.spec) if mic else None)
        elif mic is not None and camera_audio_index(mic.spec) is not None:
            # The camera's session has no sound (or the camera did not open): watched, never fed, so the health
            # report says "no sound from camera N" for as long as this part records.
            watch.mic = MicWatch(mic.shown, camera=camera_audio_index(mic.spec))
        tap_sources(recorder, watch.observe)
        if self.cpr is not None:
            self.cpr.recording_started(recorder, attempt, self.clock.offset_s)
        self.recorder, self.attempt, self.watch, self.part = recorder, attempt, watch, number
        if self.live is not None:
            # media_from: the grid draws each frame's own time (media time + this) over the picture (server ident.py)
            self.live.set_meta(candidate=attempt.candidate, recording=True, media_from=iso(media_from))
        self.sample = {"cameras": [], "microphone": None}
        alog.write("part_started", part=number, folder=part.name, media_from=iso(media_from),
                   failures=list(recorder.failures))
        if earlier:
            self._log_gap(alog, earlier[-1], media_from, number)
        log.info("recording %s part %d", attempt.attempt_id, number)

    @staticmethod
    def _log_gap(alog: AttemptLog, previous_part: Path, media_from: datetime, number: int) -> None:
        _, end, reason = part_media_span(previous_part)
        if end is None:
            previous = [e for e in alog.read() if e.get("event") != "part_started"]
            end = datetime.fromisoformat(previous[-1]["wall"]) if previous else media_from
        alog.write("gap", **{"from": iso(end), "to": iso(media_from)},
                   seconds=round((media_from - end).total_seconds(), 3), before_part=number,
                   reason=reason or "agent_restart")

    async def stop(self, reason: str) -> None:
        """Stop the running part (end line, part_stopped in the log) and queue it."""
        recorder, attempt = self.recorder, self.attempt
        assert recorder is not None
        self.recorder, self.attempt, self.watch = None, None, None
        stats = await asyncio.to_thread(recorder.stop, reason)
        if self.cpr is not None:
            await asyncio.to_thread(self.cpr.recording_stopped)
        if self.live is not None:
            self.live.set_meta(recording=False, media_from=None)
        if attempt is not None:
            AttemptLog(self.recordings / attempt.attempt_id).write(
                "part_stopped", part=self.part, reason=recorder.stop_reason, failures=stats.get("failures", []))
        self.uploads.queue_part(recorder.config.out_dir)

    async def end_attempt(self, attempt: Attempt) -> None:
        """The attempt is over: stop its part; parts cut short by a crash get their end line; queue every part."""
        if self.recorder is not None:
            await self.stop("completed")
        for part in part_dirs(self.recordings / attempt.attempt_id):  # both idempotent
            if close_cut(part, "interrupted", {"closed_at": iso(station_clock.now())}):
                AttemptLog(part.parent).write("part_closed", part=int(part.name[5:]), reason="interrupted")
            self.uploads.queue_part(part)

    def report(self) -> dict[str, Any]:
        """The health report's recording, cameras, microphone and recorder failures."""
        mic = self.cfg.microphone
        if self.recorder is None:
            return {"recording": None, "cameras": [{"source": c.shown, "state": "idle"} for c in self.cfg.cameras],
                    "microphone": {"source": mic.shown, "state": "idle"} if mic else None, "failures": []}
        return {"recording": {"part": self.part}, "cameras": self.sample["cameras"],
                "microphone": self.sample["microphone"] if mic else None,
                "failures": list(self.recorder.failures[-5:])}

    async def watch_loop(self) -> None:
        """Once a second: sample the sources' health; every few seconds queue the part's new fragments."""
        last_feed = 0.0
        while True:
            watch = self.watch
            if watch is not None:
                self.sample = watch.sample(self.cfg.frozen_s, self.cfg.silence_s, self.cfg.silence_dbfs)
            folder = self.folder
            if folder is not None and time.monotonic() - last_feed > QUEUE_FEED_S:
                last_feed = time.monotonic()
                await asyncio.to_thread(self.uploads.queue_part, folder)
            await asyncio.sleep(1.0)
