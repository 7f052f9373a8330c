"""What a readiness check measures on the station's test recording (station_agent/readiness.py records it).

While it records, the sources are watched by the same rules as during an exam (station_agent/health.py): a
picture's brightness (black: mean under 12 of 255), a frozen picture (unchanged at full resolution for `frozen_s`),
the pictures a camera delivers per second against the rate asked, the sound's level each second against the room's
floor (`silence_dbfs`). A stream-copied camera hands over no pictures while it records, so its picture is judged
afterwards from the recorded track, decoded once a second, by the same rules. Then the recording is checked for
flash-and-beep markers (media/synccheck.py): only when the calibration clip plays in the room is there anything to
measure, otherwise the sync is "not measured".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from media import synccheck
from media.fragments import ChainedReader
from media.manifest import MANIFEST_NAME, read_manifest
from media.readiness_report import CameraResult, MicrophoneResult, SyncResult

from .config import AgentConfig
from .health import BLACK_MEAN, FREEZE_NOISE, SourceWatch, grey, picture_difference

MIN_PAIRS = 3  # flash-and-beep pairs needed before the sync counts as measured


@dataclass
class Watched:
    """One camera's figures over the test, from the source watch sampled about once a second."""

    frames_at_start: int | None = None
    frames: int = 0
    lumas: list[float] = field(default_factory=list)
    black: list[bool] = field(default_factory=list)
    frozen_s: float = 0.0
    arriving: bool = False
    pictures: bool = False  # the watch saw decoded pictures (not a stream copy)


@dataclass
class Sampler:
    """Samples a recording's `SourceWatch` from the end of the warm-up to the end of the test."""

    watch: SourceWatch
    cfg: AgentConfig
    cameras: dict[str, Watched] = field(default_factory=dict)
    levels: list[float] = field(default_factory=list)  # dBFS, one a second
    mic_arriving: bool = False
    started: float | None = None
    ended: float | None = None

    def sample(self) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        self.ended = now
        state = self.watch.sample(self.cfg.frozen_s, self.cfg.silence_s, self.cfg.silence_dbfs)
        for cam in state["cameras"]:
            w = self.cameras.setdefault(cam["track"], Watched())
            source = self.watch.cameras[cam["track"]]
            if w.frames_at_start is None:
                w.frames_at_start = cam["frames"]
            w.frames, w.arriving = cam["frames"], cam["arriving"]
            w.frozen_s = max(w.frozen_s, cam["frozen_for_s"]) if cam["frozen"] else w.frozen_s
            if source.latest is not None:
                w.pictures = True
                w.lumas.append(float(cv2.mean(grey(source.latest))[0]))
                w.black.append(bool(cam["black"]))
        mic = state["microphone"]
        if mic is not None:
            self.mic_arriving = mic["arriving"]
            if mic["level_dbfs"] is not None:
                self.levels.append(float(mic["level_dbfs"]))


def decoded_pictures(folder: Path, track: str, every_s: float = 1.0) -> list[tuple[float, np.ndarray]]:
    """(time, grey picture at full resolution) of a recorded track, about one every `every_s`."""
    manifest = read_manifest(folder)
    files = [folder / f.file for f in manifest.track_files(track)]
    out: list[tuple[float, np.ndarray]] = []
    if not files:
        return out
    with av.open(ChainedReader(files), "r") as container:
        stream = container.streams.video[0]
        next_t = -math.inf
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None:
                continue
            t = float(frame.pts * frame.time_base)
            if t >= next_t:
                out.append((t, frame.to_ndarray(format="gray")))
                next_t = t + every_s
    return out


def longest_freeze(pictures: list[tuple[float, np.ndarray]]) -> float:
    """The longest time the pictures stayed within the freeze tolerance of the first picture of a run (as
    health.CameraWatch decides, against the run's first picture so that a slow drift ends it)."""
    longest, start, reference = 0.0, None, None
    for t, picture in pictures:
        if reference is not None and picture_difference(picture, reference) <= FREEZE_NOISE:
            assert start is not None
            longest = max(longest, t - start)
        else:
            start, reference = t, picture
    return longest


def cameras(cfg: AgentConfig, folder: Path, sampler: Sampler, failures: list[str]) -> list[CameraResult]:
    """One result per configured camera, in the configuration's order."""
    tracks = read_manifest(folder).header["tracks"] if (folder / MANIFEST_NAME).exists() else []
    unused = [(t["id"], t["source"]) for t in tracks]
    seconds = (sampler.ended or 0.0) - (sampler.started or 0.0)
    out = []
    for index, cam in enumerate(cfg.cameras):
        match = next((u for u in unused if u[1] == cam.spec), None)
        if match is None:
            error = next((f for f in failures if f.startswith(f"video {index} (")), "the camera did not open")
            out.append(CameraResult(source=cam.spec, track=None, error=error, requested_fps=cfg.fps))
            continue
        unused.remove(match)
        track = match[0]
        w = sampler.cameras.get(track, Watched())
        delivered = w.frames - (w.frames_at_start or 0)
        fps = delivered / seconds if seconds > 0 else 0.0
        luma: float | None = float(np.mean(w.lumas)) if w.lumas else None
        black = bool(w.black) and sum(w.black) * 2 > len(w.black)
        frozen_s = w.frozen_s
        if not w.pictures and w.frames:  # stream copy: judge the recorded pictures
            pictures = decoded_pictures(folder, track)
            if pictures:
                luma = float(np.mean([cv2.mean(p)[0] for _, p in pictures]))
                black = luma < BLACK_MEAN
                freeze = longest_freeze(pictures)
                frozen_s = freeze if freeze >= cfg.frozen_s else 0.0
        out.append(CameraResult(source=cam.spec, track=track, frames=delivered, fps=round(fps, 2),
                                requested_fps=cfg.fps, luma=None if luma is None else round(luma, 1), black=black,
                                frozen_s=round(frozen_s, 1), arriving=w.arriving))
    return out


def microphone(cfg: AgentConfig, folder: Path, sampler: Sampler, failures: list[str]) -> MicrophoneResult | None:
    mic = cfg.microphone
    if mic is None:
        return None
    tracks = read_manifest(folder).header["tracks"] if (folder / MANIFEST_NAME).exists() else []
    if not tracks or tracks[0]["audio"] is None:
        error = next((f for f in failures if f.startswith("audio (")), "the microphone did not open")
        return MicrophoneResult(source=mic.spec, error=error, floor_dbfs=cfg.silence_dbfs)
    levels = sampler.levels
    mean = None
    if levels:  # the mean of the energy, not of the decibels
        mean = round(10 * math.log10(max(1e-12, float(np.mean([10 ** (x / 10) for x in levels])))), 1)
    return MicrophoneResult(source=mic.spec, arriving=sampler.mic_arriving, level_dbfs=mean,
                            peak_dbfs=round(max(levels), 1) if levels else None, floor_dbfs=cfg.silence_dbfs)


def sync(folder: Path) -> SyncResult:
    """The first track's sound-to-picture offset from flash-and-beep markers, if the calibration clip played."""
    report: dict[str, Any] = synccheck.sync_check(folder)
    best: tuple[str, dict[str, Any]] | None = None
    for name, summary in report["tracks"].items():
        if summary.get("pairs", 0) >= MIN_PAIRS and (best is None or summary["pairs"] > best[1]["pairs"]):
            best = (name, summary)
    if best is None:
        first = next(iter(report["tracks"]), None)
        pairs = report["tracks"][first].get("pairs", 0) if first else 0
        return SyncResult(track=first, pairs=pairs)
    name, summary = best
    return SyncResult(track=name, pairs=summary["pairs"], median_ms=summary["median_ms"],
                      max_abs_ms=summary["max_abs_ms"],
                      suggested_latency_ms=summary.get("suggested_camera_latency_ms"))
