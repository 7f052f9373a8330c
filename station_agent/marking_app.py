"""The in-room marking page and its JSON API, served by the station agent for an examiner's tablet.

Every mark goes to the journal (committed to disk) before the request is answered. Pages show the
candidate's accreditation number only, never a name. An examiner signs in with their login and the PIN the
server issued for this station and day (the station's roster, station_agent/roster.py; without a server, the
agent's own configured PINs). Sign-in is throttled and the session ends with the exam day or at logout
(station_agent/tablet_auth.py). The examiner of every mark is the signed-in session's, and the mark is signed
with that examiner's key before it is journaled (checklists/examiner_keys.py): the server checks it.

API (JSON; all but login need the session cookie):
- POST /api/login {"examiner", "pin"} -> sets the cookie (401 wrong, 429 wait Retry-After seconds, 503 busy)
- POST /api/logout -> ends the session on the agent
- GET /api/state -> attempt, checklist, this examiner's sheet and score, start time, server time, and for the CPR
  checklist `figures` {item number: [strings]} when a CPR figures report (`osce-cpr-figures/1`) exists at
  `figures_path`; the figures inform the examiner and never change a mark
- POST /api/start -> starts the phase timer (once)
- POST /api/events {"event_id", "kind", "item"?, "done"?, "rating"?, "reason"?} -> the stored event and the
  new state; re-sending the same event_id is answered the same way and stored once (idempotent).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from checklists import examiner_keys
from checklists.marks import MarkEvent, MarkEventError, parse_wall_time, utc_now_iso
from checklists.model import PRESENTATIONS, Checklist
from checklists.scoring import score
from media.cpr.figures import CHECKLIST_FIGURES, MAX_REPORT_BYTES, check_report

from . import station_clock
from .journal import Journal
from .pages import render, setup_pages
from .roster import Roster
from .tablet_auth import LoginRefused, TabletAuth, TabletSession
from .texts import russian

log = logging.getLogger(__name__)
COOKIE = "osce_marking"
CANDIDATE_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]{0,39}\Z")  # \Z: "$" would let a trailing newline in
CLIENT_FIELDS = ("event_id", "kind", "item", "done", "rating", "reason")
PENDING_NOTE = russian("cpr_pending")


@dataclass
class MarkingConfig:
    checklist: Checklist
    db_path: Path
    attempt_id: str
    candidate_number: str  # the accreditation number; names never reach this page
    examiners: dict[str, str] | None = None  # login -> PIN, for a station without a server (else `tablet`)
    station_id: str = "station-1"
    recording_started_at: str | None = None  # ISO-8601 UTC; else the start button on the page sets it
    tablet: TabletAuth | None = None  # who may sign in, and the sessions (shared by the pages of every attempt)
    figures_path: Path | None = None  # a CPR figures report written beside the recording, read when it exists

    def __post_init__(self) -> None:
        if not CANDIDATE_RE.match(self.candidate_number):
            raise ValueError(
                f"candidate_number: an accreditation number (letters, digits, '-'), not {self.candidate_number!r}"
            )
        if self.examiners is not None:
            for login, pin in self.examiners.items():
                if not isinstance(pin, str) or not examiner_keys.PIN_RE.fullmatch(pin):
                    raise ValueError(f"examiners: {login}: a PIN is {examiner_keys.MIN_PIN_DIGITS} to 12 digits")
        if self.tablet is None:
            if not self.examiners:
                raise ValueError("examiners: at least one login with a PIN is needed")
            self.tablet = TabletAuth(Roster.from_pins(self.examiners, self.station_id))
        if self.recording_started_at is not None:
            parse_wall_time(self.recording_started_at)


CONFIG = web.AppKey("config", MarkingConfig)
JOURNAL = web.AppKey("journal", Journal)


def _json_error(status: int, message: str, field_name: str | None = None,
                headers: dict[str, str] | None = None) -> web.HTTPException:
    body = json.dumps({"error": message, "field": field_name}, ensure_ascii=False)
    cls = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        429: web.HTTPTooManyRequests,
        503: web.HTTPServiceUnavailable,
    }[status]
    return cls(text=body, content_type="application/json", headers=headers)


def _tablet(request: web.Request) -> TabletAuth:
    tablet = request.app[CONFIG].tablet
    assert tablet is not None  # set by MarkingConfig
    return tablet


def _session(request: web.Request) -> TabletSession:
    found = _tablet(request).session(request.cookies.get(COOKIE))
    if found is None:
        raise _json_error(401, "нужно войти: логин и PIN члена комиссии")
    return found


def _examiner(request: web.Request) -> str:
    return _session(request).examiner


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise _json_error(400, "body: must be application/json", "body")
    try:
        data = await request.json()
    except ValueError:
        raise _json_error(400, "body: not JSON", "body") from None
    if not isinstance(data, dict):
        raise _json_error(400, "body: must be a JSON object", "body")
    return data


async def index(request: web.Request) -> web.Response:
    return render("marking.html", request)


async def login(request: web.Request) -> web.Response:
    data = await _body(request)
    examiner, pin = data.get("examiner"), data.get("pin")
    if not isinstance(examiner, str) or not isinstance(pin, str) or len(examiner) > 64 or len(pin) > 64:
        raise _json_error(400, "examiner и pin: строки", "pin")
    try:
        token, session = await _tablet(request).login(examiner, pin, request.remote or "?")
    except LoginRefused as exc:
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
        raise _json_error(exc.status, exc.message, None, headers) from None
    response = web.json_response({"examiner": session.examiner, "expires_at": session.expires_at.isoformat()})
    max_age = (session.expires_at - station_clock.now()) // timedelta(seconds=1)
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", max_age=max(1, max_age), path="/")
    return response


async def logout(request: web.Request) -> web.Response:
    _tablet(request).logout(request.cookies.get(COOKIE))
    response = web.json_response({})
    response.del_cookie(COOKIE, path="/")
    return response


def _started_at(app: web.Application) -> str | None:
    config = app[CONFIG]
    return config.recording_started_at or app[JOURNAL].started_at(config.attempt_id)


def _figures(config: MarkingConfig) -> dict[str, list[str]]:
    """The CPR figures beside the items, from the report at `figures_path` if it exists and fits this checklist."""
    stem = Path(config.checklist.source).stem
    path = config.figures_path
    if path is None or stem not in CHECKLIST_FIGURES:
        return {}
    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise ValueError(f"larger than {MAX_REPORT_BYTES} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
        items = check_report(data)
        if data["checklist"] != stem:
            raise ValueError(f"checklist: {data['checklist']!r}, not {stem!r}")
    except FileNotFoundError:  # the station's own analysis may be running (station_agent/cpr_analysis.py)
        first = min(CHECKLIST_FIGURES[stem])
        if path.with_suffix(".pending").exists() and first in config.checklist.item_numbers:
            return {str(first): [PENDING_NOTE]}
        return {}
    except (OSError, ValueError) as exc:  # a half-written or foreign file: show nothing rather than fail the page
        log.warning("CPR figures %s ignored: %s", path, exc)
        return {}
    numbers = config.checklist.item_numbers
    return {str(n): lines for n, lines in sorted(items.items()) if n in numbers and lines}


def _state(app: web.Application, examiner: str) -> dict[str, Any]:
    config = app[CONFIG]
    checklist = config.checklist
    sheet = app[JOURNAL].sheets(config.attempt_id).get(examiner)
    marks = sheet.marks if sheet else {}
    state: dict[str, Any] = {
        "attempt_id": config.attempt_id,
        "candidate_number": config.candidate_number,
        "station_id": config.station_id,
        "examiner": examiner,
        "checklist": checklist.to_public(),
        "presentations": PRESENTATIONS,
        "sheet": {
            "marks": {str(n): done for n, done in marks.items()},
            "rating": sheet.rating if sheet else None,
            "finalised": sheet.finalised if sheet else False,
            "ever_finalised": sheet.ever_finalised if sheet else False,
            "history": [e.to_json() for e in sheet.history] if sheet else [],
            "corrections": [e.to_json() for e in sheet.corrections] if sheet else [],
        },
        "score": score(checklist, marks).to_json(),
        "started_at": _started_at(app),
        "server_time": utc_now_iso(),
    }
    figures = _figures(config)
    if figures:
        state["figures"] = figures
    return state


async def state(request: web.Request) -> web.Response:
    return web.json_response(_state(request.app, _examiner(request)))


async def start(request: web.Request) -> web.Response:
    examiner = _examiner(request)
    config = request.app[CONFIG]
    if config.recording_started_at is None:
        request.app[JOURNAL].start(config.attempt_id)
    return web.json_response(_state(request.app, examiner))


async def post_event(request: web.Request) -> web.Response:
    session = _session(request)
    examiner = session.examiner
    data = await _body(request)
    for key in data:
        if key not in CLIENT_FIELDS:
            raise _json_error(400, f"{key}: unknown field", key)
    app = request.app
    config, journal = app[CONFIG], app[JOURNAL]
    event_id = data.get("event_id")
    known = journal.get(event_id) if isinstance(event_id, str) else None
    if known is not None:
        same = (
            known.examiner == examiner
            and known.attempt_id == config.attempt_id
            and all(getattr(known, k) == data.get(k) for k in CLIENT_FIELDS)
        )
        if not same:
            raise _json_error(409, "event_id: already used for a different event", "event_id")
        return web.json_response({"event": known.to_json(), "stored": False, "state": _state(app, examiner)})

    now = station_clock.now()
    started = _started_at(app)
    offset = max(0.0, (now - parse_wall_time(started)).total_seconds()) if started else None
    try:
        event = MarkEvent(
            event_id=event_id,  # type: ignore[arg-type]  # checked by MarkEvent
            attempt_id=config.attempt_id,
            station_id=config.station_id,
            examiner=examiner,
            kind=data.get("kind"),  # type: ignore[arg-type]
            item=data.get("item"),
            done=data.get("done"),
            rating=data.get("rating"),
            reason=data.get("reason"),
            checklist_hash=config.checklist.content_hash,
            wall_time=now.isoformat(timespec="microseconds"),
            recording_offset_s=offset,
            seq=journal.next_seq(config.attempt_id, examiner),
        )
    except MarkEventError as exc:
        raise _json_error(400, str(exc), exc.field) from None
    if event.item is not None and event.item not in config.checklist.item_numbers:
        raise _json_error(400, f"item: no item {event.item} in this checklist", "item")
    if event.rating is not None:
        if config.checklist.rating is None:
            raise _json_error(400, "rating: this checklist has no global rating", "rating")
        try:
            config.checklist.rating.check(event.rating)
        except ValueError as exc:
            raise _json_error(400, str(exc), "rating") from None
    proof = examiner_keys.sign(session.key, session.key_id, event)  # type: ignore[arg-type]
    try:
        journal.append(event, proof)
    except MarkEventError as exc:
        raise _json_error(409, str(exc), exc.field) from None
    return web.json_response({"event": event.to_json(), "stored": True, "state": _state(app, examiner)})


def check_journal_version(journal: Journal, config: MarkingConfig) -> None:
    """Refuse to mark an attempt against another checklist version than its stored marks were made on."""
    known = {e.checklist_hash for e in journal.events(config.attempt_id)}
    if known - {config.checklist.content_hash}:
        raise ValueError(
            f"checklist_hash: attempt {config.attempt_id} was marked against checklist version "
            f"{', '.join(sorted(known))}, not {config.checklist.content_hash} ({config.checklist.title})"
        )


def create_marking_app(config: MarkingConfig) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[CONFIG] = config

    async def journal_ctx(app: web.Application) -> AsyncIterator[None]:
        app[JOURNAL] = Journal(config.db_path)
        try:
            check_journal_version(app[JOURNAL], config)
        except ValueError:
            app[JOURNAL].close()
            raise
        yield
        app[JOURNAL].close()

    app.cleanup_ctx.append(journal_ctx)
    app.router.add_get("/", index)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/state", state)
    app.router.add_post("/api/start", start)
    app.router.add_post("/api/events", post_event)
    setup_pages(app)
    return app
