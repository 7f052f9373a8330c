"""`osce sync-check`: the audio/video offset of a recording, measured as a player sees it.

The scene (synthetic sources, or the calibration clip played in a room) flashes white and
beeps 1 kHz for 100 ms at the same instants. Video is taken by its timestamps: the flash's
instant is the brightness-weighted centre of the flash frames, which places it to a fraction
of a frame. Audio is taken as a player plays it, one continuous sample stream from its first
timestamp: the beep's instant is the centre of its 1 kHz energy minus half its length.
Offset = audio instant - video instant (positive: the sound comes late).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import av
import numpy as np

from media.fragments import ChainedReader
from media.manifest import MANIFEST_NAME, read_manifest

BEEP_HZ = 1000.0
BEEP_S = 0.100
PAIR_WINDOW_S = 0.5
FLASH_PERIOD_S = 1.0


def _track_inputs(path: Path) -> dict[str, Any]:
    """name -> something PyAV opens: a recording folder's tracks, or one media file."""
    path = Path(path)
    if path.is_dir():
        if not (path / MANIFEST_NAME).exists():
            raise FileNotFoundError(f"{path}: not a recording folder (no {MANIFEST_NAME})")
        manifest = read_manifest(path)
        out = {}
        for track in manifest.track_ids():
            files = [path / f.file for f in manifest.track_files(track)]
            if files:
                out[track] = files
        return out
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return {path.stem: [path]}


def decode_track(files: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """(frame times, frame mean luma, audio samples or None, audio start time)."""
    reader = ChainedReader(files)
    times, lumas = [], []
    with av.open(reader, "r") as container:
        vstream = container.streams.video[0]
        vstream.thread_type = "AUTO"
        astreams = container.streams.audio
        chunks: list[np.ndarray] = []
        audio_start = math.nan
        decode = [vstream] + ([astreams[0]] if astreams else [])
        for frame in container.decode(*decode):
            if not isinstance(frame, av.VideoFrame | av.AudioFrame):
                continue  # only the video and audio streams are decoded
            assert frame.pts is not None and frame.time_base is not None  # decoded from a file
            if isinstance(frame, av.VideoFrame):
                small = frame.reformat(width=160, height=90, format="gray").to_ndarray()
                times.append(float(frame.pts * frame.time_base))
                lumas.append(float(small.mean()))
            elif isinstance(frame, av.AudioFrame):
                if not chunks:
                    audio_start = float(frame.pts * frame.time_base)
                data = frame.to_ndarray()
                chunks.append(data.mean(axis=0) if data.ndim == 2 else data)
                if frame.format.name in ("s16", "s16p"):
                    chunks[-1] = chunks[-1] / 32768.0
    audio = np.concatenate(chunks).astype(np.float32) if chunks else None
    return np.asarray(times), np.asarray(lumas), audio, audio_start


def flash_times(times: np.ndarray, lumas: np.ndarray) -> list[float]:
    """Instants of the white flashes: brightness-weighted centres of runs of bright frames."""
    if len(times) < 5:
        return []
    n = len(lumas)
    half = 12
    padded = np.pad(lumas, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    baseline = np.median(windows, axis=1)[:n]
    weight = np.clip((lumas - baseline) / np.maximum(255.0 - baseline, 1.0), 0.0, 1.0)
    bright = weight > 0.05
    events = []
    i = 0
    while i < n:
        if not bright[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and bright[j + 1]:
            j += 1
        lo, hi = max(0, i - 1), min(n, j + 2)  # a partial frame beside the run still counts
        w = weight[lo:hi]
        total = float(w.sum())
        if 0.5 <= total <= 2.5:
            events.append(float((w * times[lo:hi]).sum() / total))
        i = j + 1
    return events


def beep_times(audio: np.ndarray, start: float, rate: int = 48000) -> list[float]:
    """Onsets of the 1 kHz bursts: centre of their 1 kHz energy minus half the burst."""
    n = np.arange(audio.size, dtype=np.float64)
    z = audio.astype(np.float64) * np.exp(-2j * np.pi * BEEP_HZ * n / rate)
    width = rate // 100  # 10 ms moving average keeps 1 kHz and rejects speech and hum
    csum = np.concatenate([[0], np.cumsum(z)])
    smooth = (csum[width:] - csum[:-width]) / width
    energy = np.abs(smooth) ** 2
    if energy.size == 0:
        return []
    peak = float(np.quantile(energy, 0.999))
    if peak <= 0:
        return []
    above = energy > 0.1 * peak
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    events = []
    starts = edges[~above[edges]] + 1 if edges.size else np.array([], dtype=int)
    for s in starts:
        e = s
        while e < above.size and above[e]:
            e += 1
        if e >= above.size:
            continue  # cut off by the end of the recording: its centre would be early by what is missing
        length = (e - s) / rate
        if not (0.5 * BEEP_S <= length <= 2.0 * BEEP_S):
            continue
        lo, hi = max(0, s - width), min(energy.size, e + width)
        seg = energy[lo:hi]
        centre = (seg * np.arange(lo, hi)).sum() / seg.sum() + width / 2  # moving average lags half its width
        events.append(start + centre / rate - BEEP_S / 2)
    return events


def pair_offsets(videos: list[float], audios: list[float]) -> list[tuple[float, float]]:
    """(video instant, audio - video) for each flash with a beep within half a second of the usual offset.

    Flashes and beeps come once a second, so an offset is known only modulo a second: the pairs are centred on
    the offsets' circular mean, so that an offset near half a second (two cameras of one room started apart, a
    very late camera) is not split between the beep before the flash and the beep after it."""
    if not audios or not videos:
        return []
    a = np.asarray(audios)
    nearest = np.asarray([a[int(np.argmin(np.abs(a - v)))] - v for v in videos])
    angle = float(np.angle(np.mean(np.exp(2j * np.pi * nearest / FLASH_PERIOD_S))))
    centre = angle * FLASH_PERIOD_S / (2 * np.pi)
    pairs = []
    for v in videos:
        k = int(np.argmin(np.abs(a - v - centre)))
        if abs(a[k] - v - centre) < PAIR_WINDOW_S:
            pairs.append((v, float(a[k] - v)))
    return pairs


def summarise(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    if not pairs:
        return {"pairs": 0, "error": "no flash-and-beep pairs found"}
    t = np.asarray([p[0] for p in pairs])
    off = np.asarray([p[1] for p in pairs]) * 1000.0
    drift = float(np.polyfit(t, off, 1)[0] * 3600.0) if len(pairs) >= 3 and np.ptp(t) > 0 else 0.0
    return {
        "pairs": len(pairs),
        "median_ms": round(float(np.median(off)), 3),
        "mean_ms": round(float(off.mean()), 3),
        "max_abs_ms": round(float(np.abs(off).max()), 3),
        "spread_ms": round(float(off.max() - off.min()), 3),
        "stdev_ms": round(float(off.std()), 3),
        "drift_ms_per_hour": round(drift, 3),
        "span_s": round(float(np.ptp(t)), 3),
    }


def sync_check(path: Path) -> dict[str, Any]:
    """The A/V offset of each track of a recording (or of one media file)."""
    report: dict[str, Any] = {"path": str(path), "tracks": {}}
    manifest = read_manifest(Path(path)) if Path(path).is_dir() else None
    latency = {t["id"]: t.get("latency_ms", 0.0) for t in manifest.header["tracks"]} if manifest else {}
    for name, files in _track_inputs(Path(path)).items():
        times, lumas, audio, audio_start = decode_track(files)
        if audio is None:
            report["tracks"][name] = {"pairs": 0, "error": "the track has no audio"}
            continue
        flashes = flash_times(times, lumas)
        beeps = beep_times(audio, audio_start)
        summary = summarise(pair_offsets(flashes, beeps))
        summary["flashes"], summary["beeps"] = len(flashes), len(beeps)
        if "median_ms" in summary:
            # Calibration: the camera latency that would bring the median offset to zero.
            summary["suggested_camera_latency_ms"] = round(latency.get(name, 0.0) - summary["median_ms"], 1)
        report["tracks"][name] = summary
    return report
