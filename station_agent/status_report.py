"""The station's status report to the server every few seconds (format: media/station_status.py): phase and
attempt, recording, cameras and microphone, disk, upload backlog and last upload, clock offset, agent version and
the warnings the observation room shows. The centre console's stations board is made of these; a station that
stops reporting shows there as offline. Nothing depends on a report arriving: a failed one is simply replaced
by the next."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from importlib import metadata
from typing import TYPE_CHECKING, Any

import aiohttp

from media.station_status import FORMAT, INTERVAL_S, path, time_text

from . import station_clock
from .live_status import warnings_of

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from .config import AgentConfig
    from .reports import Reports

log = logging.getLogger(__name__)


def agent_version() -> str:
    try:
        return metadata.version("osce-station")
    except metadata.PackageNotFoundError:
        return "unknown"


def _kind(source: str) -> str:
    """A source's scheme (rtsp, copy, synthetic, a device): never its address, which may hold a password."""
    scheme = source.split(":", 1)[0]
    return scheme if scheme.isalpha() else "device"  # "0", "/dev/video0": a local device


def _when(epoch: float | None) -> str | None:
    return None if epoch is None else time_text(dt.datetime.fromtimestamp(epoch, dt.UTC))


def report_of(reports: Reports, version: str) -> dict[str, Any]:
    """The report from the agent's health report and exam clock."""
    health, state = reports.health(), reports.clock_state()
    attempt = reports.attempts.current
    cameras = [{"track": cam.get("track") or f"cam{i}", "kind": _kind(str(cam.get("source", ""))),
                "state": cam.get("state", "idle"), "arriving": cam.get("arriving"), "fps": cam.get("fps"),
                "frozen": cam.get("frozen"), "black": cam.get("black")} for i, cam in enumerate(health["cameras"])]
    mic = health.get("microphone")
    upload = health.get("upload") or {}
    queue, uploader = upload.get("queue") or {}, upload.get("uploader") or {}
    return {
        "format": FORMAT, "agent_version": version, "sent_at": time_text(station_clock.now()),
        "phase": state["phase"], "attempt_id": state["attempt_id"],
        "candidate": attempt.candidate if attempt is not None else None,
        "time_left_s": state["remaining_s"] if attempt is not None else None,
        "recording": health.get("recording") is not None,
        "cameras": cameras,
        "microphone": None if mic is None else {"state": mic.get("state", "idle"), "arriving": mic.get("arriving"),
                                                 "level_dbfs": mic.get("level_dbfs"), "silent": mic.get("silent")},
        "disk": {k: health["disk"].get(k) for k in ("free_mb", "reserve_mb", "warning", "stop")},
        "upload": {"queue_length": queue.get("length", 0), "bytes_pending": queue.get("bytes", 0),
                   "oldest_age_s": queue.get("oldest_age_s"), "failed": queue.get("failed", 0),
                   "last_success_at": _when(uploader.get("last_success_at"))},
        "clock": health.get("clock"),
        "warnings": warnings_of(health),
    }


async def run(cfg: AgentConfig, reports: Reports) -> None:
    url = f"{cfg.server_url}{path(cfg.station_id)}"
    version = agent_version()
    last_error: str | None = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while True:
            try:
                body = report_of(reports, version)
                async with http.put(url, json=body, headers={"Authorization": f"Bearer {cfg.token}"}) as response:
                    if response.status != 200:
                        raise RuntimeError(f"PUT {url}: HTTP {response.status} {(await response.text())[:200]}")
                last_error = None
            except Exception as exc:  # noqa: BLE001 - the next report replaces this one
                if str(exc) != last_error:
                    log.warning("status report: %s", exc)
                last_error = str(exc)
            await asyncio.sleep(INTERVAL_S)


def loops(cfg: AgentConfig, reports: Reports) -> list[Coroutine[Any, Any, None]]:
    return [run(cfg, reports)] if cfg.server_url and cfg.token else []
