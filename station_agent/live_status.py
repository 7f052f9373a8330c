"""What the observation room's grid shows beside a station's picture, sent as the live publisher's meta every
couple of seconds: the attempt (id and checklist version, so that examiners can mark beside the picture),
phase and seconds left, and health warnings as ``{"code", "text"}`` (Russian text; codes for the page's badges):
camera_lost, camera_frozen, camera_black, camera_slow (fewer pictures a second than asked for), mic_lost (also a
camera's own sound), mic_silent, disk_full, disk_low, upload_backlog, upload_failed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from .live_publisher import LivePublisher
    from .reports import Reports

log = logging.getLogger(__name__)

STATUS_S = 2.0
BACKLOG_AGE_S = 120.0  # the oldest fragment waiting longer than this: the upload is behind
BACKLOG_BYTES = 512 * 1024 * 1024


def warnings_of(report: dict[str, Any]) -> list[dict[str, str]]:
    """Badges from a health report (station_agent/health.py, Agent.health)."""
    out: list[dict[str, str]] = []

    def add(code: str, text: str) -> None:
        out.append({"code": code, "text": text})

    for cam in report.get("cameras") or []:
        if cam.get("state") != "recording":
            continue
        name = f"Камера {cam.get('track', '')}".strip()
        if not cam.get("arriving", True):
            add("camera_lost", f"{name}: нет кадров")
        elif cam.get("frozen"):
            add("camera_frozen", f"{name}: изображение застыло ({cam.get('frozen_for_s', '?')} с)")
        if cam.get("black"):
            add("camera_black", f"{name}: чёрный кадр")
        if cam.get("slow"):
            add("camera_slow", f"{name}: {cam.get('fps_delivered')} к/с из {cam.get('fps_requested')}")
    mic = report.get("microphone") or {}
    if mic.get("state") == "recording":
        if not mic.get("arriving", True):
            add("mic_lost", f"Нет звука с камеры {mic['camera']}" if mic.get("camera") is not None
                else "Микрофон: нет звука")
        elif mic.get("silent"):
            add("mic_silent", f"Микрофон: тишина ({mic.get('silent_for_s', '?')} с)")
    disk = report.get("disk") or {}
    if disk.get("stop"):
        add("disk_full", f"Диск: {disk.get('free_mb')} МБ — запись остановлена")
    elif disk.get("warning"):
        add("disk_low", f"Диск: осталось {disk.get('free_mb')} МБ")
    queue = (report.get("upload") or {}).get("queue") or {}
    age, size = queue.get("oldest_age_s") or 0.0, queue.get("bytes") or 0
    if age > BACKLOG_AGE_S or size > BACKLOG_BYTES:
        add("upload_backlog", f"Выгрузка отстаёт: {queue.get('length', 0)} фрагм., {size / 2**20:.0f} МБ, "
                              f"ждёт {age:.0f} с")
    if queue.get("failed"):
        add("upload_failed", f"Выгрузка: {queue['failed']} фрагм. отклонены сервером")
    return out


def meta_of(reports: Reports) -> dict[str, Any]:
    state = reports.clock_state()
    attempt = reports.attempts.current
    return {"attempt_id": state["attempt_id"], "phase": state["phase"],
            "time_left": state["remaining_s"] if attempt is not None else None,
            "checklist_hash": reports.attempts.checklist.content_hash if attempt is not None else None,
            "candidate": attempt.candidate if attempt is not None else None,
            "warnings": warnings_of(reports.health())}


async def run(reports: Reports, live: LivePublisher) -> None:
    while True:
        try:
            live.set_meta(**meta_of(reports))
        except Exception:  # noqa: BLE001 - a status problem must not stop the loop
            log.exception("live status")
        await asyncio.sleep(STATUS_S)


def loops(reports: Reports, live: LivePublisher | None) -> list[Coroutine[Any, Any, None]]:
    return [run(reports, live)] if live is not None else []
