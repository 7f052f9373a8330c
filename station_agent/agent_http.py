"""The agent's HTTP API and the room clock page.

Public (no secrets in them):
- GET /healthz -> {"ok": true} while the agent's loop runs (liveness)
- GET / -> the room clock page: phase, remaining time, cues shown and played
- GET /api/clock -> {"exam_time", "attempt_id", "phase", "remaining_s", "cues": [{"seq", "cue", "text", "at"}]}
- GET /cues/{reading|performing|one_minute|time_up}.wav -> the cue's tone

With ``Authorization: Bearer <station token>``, or (health and status) an examiner's marking-page cookie:
- GET /api/health -> cameras, microphone, disk, clock offset, upload queue, problems (see station_agent/health.py)
- GET /api/status -> the attempt, phase, remaining time, recording part, marking page URL
- POST /api/attempt/start {"candidate", "attempt_id"?, "checklist"?, "reading_s"?, "performing_s"?} -> the attempt
- POST /api/attempt/stop -> the attempt, stopped now
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import time
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from .lifecycle import CUES, Attempt, ScheduleError, cue_wav
from .marking_app import COOKIE
from .marking_host import MarkingHost
from .pages import render, setup_pages
from .reports import Reports

log = logging.getLogger(__name__)


class StationApi(Protocol):
    """What the API uses of the agent (station_agent/daemon.py's Agent)."""

    token: str
    marking: MarkingHost | None
    reports: Reports
    last_tick: float  # monotonic time of the last tick: /healthz fails when it is old

    async def start_by_hand(self, body: dict[str, Any]) -> Attempt: ...

    async def stop_by_hand(self) -> Attempt: ...


AGENT = web.AppKey("agent", StationApi)


def local_token(data_dir: Path) -> str:
    """Without a station token the API still needs one: made once, kept in <data>/api-token (0600)."""
    path = data_dir / "api-token"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    log.info("no station token configured: the API token is in %s", path)
    return token



def _agent(request: web.Request) -> StationApi:
    return request.app[AGENT]


def _error(cls: type[web.HTTPException], message: str) -> web.HTTPException:
    return cls(text=json.dumps({"error": message}, ensure_ascii=False), content_type="application/json")


def _authorised(request: web.Request, examiners_too: bool = False) -> None:
    """The station token (technician, server); with `examiners_too`, an examiner's marking-page cookie too."""
    agent = _agent(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), agent.token.encode()):
        return
    if examiners_too and agent.marking is not None and agent.marking.examiner(request.cookies.get(COOKIE)):
        return
    raise _error(web.HTTPUnauthorized, "station token needed: Authorization: Bearer <token>")


async def healthz(request: web.Request) -> web.Response:
    age = time.monotonic() - _agent(request).last_tick
    if age > 30:
        raise _error(web.HTTPServiceUnavailable, f"the agent's loop last ran {age:.0f} s ago")
    return web.json_response({"ok": True})


async def page(request: web.Request) -> web.Response:
    return render("clock.html", request)


async def clock(request: web.Request) -> web.Response:
    return web.json_response(_agent(request).reports.clock_state())


@cache
def _wav(cue: str) -> bytes:
    return cue_wav(cue)


async def cue(request: web.Request) -> web.Response:
    name = request.match_info["cue"]
    if name not in CUES:
        raise _error(web.HTTPNotFound, f"no cue {name!r}")
    return web.Response(body=_wav(name), content_type="audio/wav", headers={"Cache-Control": "max-age=3600"})


async def health(request: web.Request) -> web.Response:
    _authorised(request, examiners_too=True)
    return web.json_response(_agent(request).reports.health())


async def status(request: web.Request) -> web.Response:
    _authorised(request, examiners_too=True)
    return web.json_response(_agent(request).reports.status())


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise _error(web.HTTPBadRequest, "body: not JSON") from None
    if not isinstance(data, dict):
        raise _error(web.HTTPBadRequest, "body: must be a JSON object")
    return data


async def attempt_start(request: web.Request) -> web.Response:
    _authorised(request)
    body = await _json_body(request)
    try:
        attempt = await _agent(request).start_by_hand(body)
    except ScheduleError as exc:
        cls = web.HTTPConflict if "in progress" in str(exc) or "already" in str(exc) else web.HTTPBadRequest
        raise _error(cls, str(exc)) from None
    return web.json_response({"attempt": attempt.to_json(), "status": _agent(request).reports.status()})


async def attempt_stop(request: web.Request) -> web.Response:
    _authorised(request)
    try:
        attempt = await _agent(request).stop_by_hand()
    except ScheduleError as exc:
        raise _error(web.HTTPConflict, str(exc)) from None
    return web.json_response({"attempt": attempt.to_json(), "status": _agent(request).reports.status()})


def build_app(agent: StationApi) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[AGENT] = agent
    app.router.add_get("/", page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/clock", clock)
    app.router.add_get("/cues/{cue}.wav", cue)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/status", status)
    app.router.add_post("/api/attempt/start", attempt_start)
    app.router.add_post("/api/attempt/stop", attempt_stop)
    setup_pages(app)
    return app
