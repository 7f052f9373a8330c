"""The readiness rules: a station's report (media/readiness_report.py) and what the server holds of its test
recording, judged item by item against the centre's limits (the `readiness_*` keys of the server's config).

An item is a dict kept as JSON with the check: ``{"item": "camera", "subject": "0 · synthetic", "ok": true | false
| null, "value": {"code", "params"} | null, "reasons": [{"code", "params"}], "detail": "..." | null}``. ``ok`` null
is "not measured" (the sync when the calibration clip was not playing): neither green nor red. Codes name texts
in the catalogue's "readiness" section (``v.<code>`` for a value, ``r.<code>`` for a reason); `detail` is a
technical message as the station gave it (a device's own error), shown as code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from media.readiness_report import CameraResult, MicrophoneResult, Refusal, Report

from .config import ServerConfig

Item = dict[str, Any]


@dataclass(frozen=True)
class Limits:
    max_clock_offset_s: float
    max_sync_ms: float
    min_fps_ratio: float
    disk_margin: float

    @classmethod
    def of(cls, cfg: ServerConfig) -> Limits:
        return cls(cfg.readiness_max_clock_offset_s, cfg.readiness_max_sync_ms, cfg.readiness_min_fps_ratio,
                   cfg.readiness_disk_margin)


def _says(code: str, **params: Any) -> dict[str, Any]:
    return {"code": code, "params": params}


def item(kind: str, ok: bool | None, value: dict[str, Any] | None = None, reasons: list[dict[str, Any]] | None = None,
         subject: str = "", detail: str | None = None) -> Item:
    return {"item": kind, "subject": subject, "ok": ok, "value": value, "reasons": reasons or [], "detail": detail}


def ready(items: list[Item]) -> bool:
    """Green when no item is red (an item not measured does not make a station unready)."""
    return bool(items) and all(i["ok"] is not False for i in items)


# --- a check that did not run ---------------------------------------------------------------------------------


def refused(refusal: Refusal) -> list[Item]:
    code = f"agent.{refusal.code}"
    return [item("agent", False, reasons=[_says(code, attempt=refusal.attempt_id or "", phase=refusal.phase or "",
                                                seconds=round(refusal.seconds or 0.0))])]


def offline(seconds: float) -> list[Item]:
    return [item("agent", False, reasons=[_says("agent.offline", seconds=round(seconds))])]


def no_report(seconds: float) -> list[Item]:
    return [item("agent", False, reasons=[_says("agent.timeout", seconds=round(seconds))])]


def bad_report(where: str, message: str) -> list[Item]:
    return [item("agent", False, reasons=[_says("agent.bad_report")], detail=f"{where}: {message}")]


# --- a report ---------------------------------------------------------------------------------------------------


def judge(report: Report, stored: dict[tuple[str, int], str], received_at: dt.datetime, limits: Limits) -> list[Item]:
    """Every item of a station's report; `stored` is (track, seq) -> SHA-256 of what the server holds of its test
    recording, `received_at` when the report arrived (the station's clock is compared with it)."""
    if report.refused is not None:
        return refused(report.refused)
    recorded = report.error is None and report.seconds > 0
    items = [_recording(report)] + ([_upload(report, stored)] if recorded or report.upload is not None else [])
    items += [_camera(i, cam, limits) for i, cam in enumerate(report.cameras)]
    items += [_microphone(report.microphone, recorded), _sync(report, limits), _clock(report, received_at, limits),
              _disk(report, limits)]
    return items


def _recording(report: Report) -> Item:
    if report.error is not None or report.seconds <= 0:
        return item("recording", False, reasons=[_says("recording.failed")], detail=report.error)
    tracks = sum(1 for c in report.cameras if c.track is not None)
    return item("recording", True, _says("recording", seconds=report.seconds, tracks=tracks))


def _upload(report: Report, stored: dict[tuple[str, int], str]) -> Item:
    upload = report.upload
    if upload is None or (not upload.fragments and report.error is not None):
        return item("upload", False, reasons=[_says("upload.nothing")])
    missing = [f"{f.track}/{f.seq}" for f in upload.fragments if (f.track, f.seq) not in stored]
    other = [f"{f.track}/{f.seq}" for f in upload.fragments
             if (f.track, f.seq) in stored and stored[(f.track, f.seq)] != f.sha256]
    reasons = []
    if not upload.fragments:
        reasons.append(_says("upload.nothing"))
    if missing:
        reasons.append(_says("upload.missing", count=len(missing), first=", ".join(missing[:3])))
    if other:
        reasons.append(_says("upload.mismatch", count=len(other), first=", ".join(other[:3])))
    size = sum(f.size for f in upload.fragments)
    value = _says("upload", fragments=len(upload.fragments), size_bytes=size, seconds=upload.seconds)
    return item("upload", not reasons, value, reasons, detail=upload.error if reasons else None)


def _camera(index: int, cam: CameraResult, limits: Limits) -> Item:
    subject = f"{index} · {cam.source}"
    if cam.track is None:
        return item("camera", False, reasons=[_says("camera.not_opened")], subject=subject, detail=cam.error)
    reasons = []
    if cam.frames == 0:
        reasons.append(_says("camera.no_frames"))
    else:
        if not cam.arriving:
            reasons.append(_says("camera.stopped"))
        if cam.black:
            reasons.append(_says("camera.black", luma=cam.luma or 0.0))
        if cam.frozen_s > 0:
            reasons.append(_says("camera.frozen", seconds=cam.frozen_s))
        if cam.requested_fps > 0 and cam.fps < limits.min_fps_ratio * cam.requested_fps:
            reasons.append(_says("camera.fps", fps=cam.fps, requested=cam.requested_fps,
                                 percent=round(100 * limits.min_fps_ratio)))
    value = (_says("camera", fps=cam.fps, requested=cam.requested_fps, luma=cam.luma) if cam.luma is not None
             else _says("camera.fps_only", fps=cam.fps, requested=cam.requested_fps))
    return item("camera", not reasons, value, reasons, subject=subject, detail=cam.error)


def _microphone(mic: MicrophoneResult | None, recorded: bool) -> Item:
    if mic is None:
        return item("microphone", False, reasons=[_says("microphone.none")])
    if mic.error is not None and mic.level_dbfs is None:
        return item("microphone", False, reasons=[_says("microphone.not_opened")], subject=mic.source,
                    detail=mic.error)
    if not recorded and mic.level_dbfs is None:  # no recording to listen to: the recording's item says why
        return item("microphone", None, _says("not_measured"), subject=mic.source)
    reasons = []
    if not mic.arriving or mic.level_dbfs is None:
        reasons.append(_says("microphone.no_sound"))
    elif mic.level_dbfs < mic.floor_dbfs:
        reasons.append(_says("microphone.silent", level=mic.level_dbfs, floor=mic.floor_dbfs))
    value = None if mic.level_dbfs is None else _says("microphone", level=mic.level_dbfs,
                                                      peak=mic.peak_dbfs if mic.peak_dbfs is not None else
                                                      mic.level_dbfs, floor=mic.floor_dbfs)
    return item("microphone", not reasons, value, reasons, subject=mic.source, detail=mic.error)


def _sync(report: Report, limits: Limits) -> Item:
    sync = report.sync
    if sync is None or sync.pairs == 0 or sync.median_ms is None:
        return item("sync", None, _says("sync.none"))
    value = _says("sync", median=sync.median_ms, pairs=sync.pairs)
    if abs(sync.median_ms) <= limits.max_sync_ms:
        return item("sync", True, value, subject=sync.track or "")
    suggested = sync.suggested_latency_ms if sync.suggested_latency_ms is not None else 0.0
    return item("sync", False, value, [_says("sync.off", median=sync.median_ms, limit=limits.max_sync_ms,
                                             suggested=suggested)], subject=sync.track or "")


def _clock(report: Report, received_at: dt.datetime, limits: Limits) -> Item:
    offset = (report.agent_time - received_at).total_seconds()
    value = _says("clock", offset=offset)
    if abs(offset) <= limits.max_clock_offset_s:
        return item("clock", True, value)
    return item("clock", False, value, [_says("clock.off", offset=offset, limit=limits.max_clock_offset_s)])


def _disk(report: Report, limits: Limits) -> Item:
    disk = report.disk
    if disk is None:
        return item("disk", False, reasons=[_says("disk.unknown")])
    if disk.free_bytes < disk.reserve_bytes:
        return item("disk", False, _says("disk.free", free_bytes=disk.free_bytes),
                    [_says("disk.reserve", free_bytes=disk.free_bytes, reserve_bytes=disk.reserve_bytes)])
    if disk.planned_s <= 0:
        return item("disk", True, _says("disk.no_plan", free_bytes=disk.free_bytes))
    if report.seconds <= 0 or disk.recorded_bytes <= 0:  # no test recording: no rate to plan with
        return item("disk", None, _says("disk.no_rate", free_bytes=disk.free_bytes))
    per_minute = disk.recorded_bytes / report.seconds * 60
    need = int(per_minute * disk.planned_s / 60 * limits.disk_margin) + disk.reserve_bytes
    minutes = round(disk.planned_s / 60)
    value = _says("disk", free_bytes=disk.free_bytes, need_bytes=need, minutes=minutes,
                  attempts=disk.planned_attempts)
    if disk.free_bytes >= need:
        return item("disk", True, value)
    return item("disk", False, value, [_says("disk.short", free_bytes=disk.free_bytes, need_bytes=need,
                                             minutes=minutes, per_minute_bytes=int(per_minute),
                                             reserve_bytes=disk.reserve_bytes)])
