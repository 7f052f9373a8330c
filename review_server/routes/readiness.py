"""Readiness before the exam day (review_server/readiness.py): the admin's page `/admin/readiness` with one button
per station and one for all, the runs' acts (page and PDF), and the stations' side of the channel.

The channel: the station's agent keeps one request open, `GET /api/stations/{code}/readiness/next`, for up to
`MAX_WAIT_S`; a run wakes it at once, and it takes the check (204 when nothing was asked). Chosen over the
schedule poll (every 30 s: a technician would wait half a minute for each press) and over the server calling the
agent (the server does not know the room PC's address, and a firewall or NAT between them is usual; every other
exchange goes from the agent to the server). A long poll is plain HTTP with the station's token, survives a
restart of either side (the request is a database row until taken; the agent asks again), and shows who is
online: a station whose agent holds or recently held the poll.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
import zoneinfo
from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from .. import audit, readiness
from ..i18n import lang_of, section
from ..models import utcnow
from ..readiness_act import act_pdf
from ..readiness_judge import Limits
from ..roles import requires
from ..validate import CODE_RE, Fields, path_int
from ..web import CONFIG, STORAGE, ApiError, db_run, identity, read_json, render
from .scope import own_station

routes = web.RouteTableDef()

MAX_WAIT_S = 25  # under the usual 30-60 s idle timeouts of proxies between a room and the server
RECHECK_S = 5.0  # the database is looked at this often while a poll waits (a run made by another process)
ONLINE_S = 10.0  # a station whose poll ended this recently is still online (it is about to ask again)
WAKE = web.AppKey("readiness_wake", dict)  # station code -> asyncio.Event set when a check is asked for it
POLLS = web.AppKey("readiness_polls", dict)  # station code -> [open polls, monotonic time the last one ended]
CLOSING = web.AppKey("readiness_closing", asyncio.Event)
_WAIT_RE = re.compile(r"[0-9]{1,2}")


def setup(app: web.Application) -> None:
    app[WAKE], app[POLLS], app[CLOSING] = {}, {}, asyncio.Event()

    async def closing(app: web.Application) -> None:  # open polls end at once, so a shutdown does not wait for them
        app[CLOSING].set()

    app.on_shutdown.append(closing)


def _online(app: web.Application) -> set[str]:
    now = time.monotonic()
    return {code for code, (open_polls, ended) in app[POLLS].items() if open_polls > 0 or now - ended < ONLINE_S}


def _expire(request: web.Request, s: Session) -> None:
    cfg = request.app[CONFIG]
    readiness.expire(s, utcnow(), cfg.readiness_claim_timeout_s, cfg.readiness_report_timeout_s)


# --- the station's side -------------------------------------------------------------------------------------------


@routes.get("/api/stations/{code}/readiness/next", allow_head=False)
@requires("station.readiness")
async def next_check(request: web.Request) -> web.Response:
    """The check asked of this station, taken now: 200 {"check": {"id", "seconds", "recording"}}; 204 if none was
    asked within ?wait= seconds (0 to MAX_WAIT_S; default 0: answer at once)."""
    code = own_station(request, "takes only its own readiness checks")
    raw = request.query.get("wait", "0")
    if not _WAIT_RE.fullmatch(raw) or int(raw) > MAX_WAIT_S:
        raise ApiError(400, f"wait is whole seconds from 0 to {MAX_WAIT_S}", "query wait")
    station_id = identity(request).station_id
    assert station_id is not None  # a station token
    app = request.app
    wake: asyncio.Event = app[WAKE].setdefault(code, asyncio.Event())
    polls = app[POLLS].setdefault(code, [0, 0.0])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + int(raw)

    def take(s: Session) -> dict[str, Any] | None:
        _expire(request, s)
        return readiness.claim(s, station_id, utcnow())

    polls[0] += 1
    try:
        while True:
            wake.clear()  # before looking: a run made after the look wakes the wait below
            check = await db_run(request, take)
            if check is not None:
                return web.json_response({"check": check})
            left = deadline - loop.time()
            if left <= 0 or app[CLOSING].is_set():
                return web.Response(status=204)
            waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(app[CLOSING].wait())]
            try:
                await asyncio.wait(waits, timeout=min(left, RECHECK_S), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
    finally:
        polls[0] -= 1
        polls[1] = time.monotonic()


@routes.post("/api/stations/{code}/readiness/{check_id}/progress")
@requires("station.readiness")
async def progress(request: web.Request) -> web.Response:
    """{"state": "recording" | "uploading"}: what the page shows while the check runs."""
    own_station(request, "reports only on its own readiness checks")
    check_id = path_int(request, "check_id")
    state = Fields(await read_json(request), allowed={"state"}).choice("state", ("recording", "uploading"))
    station_id = identity(request).station_id
    assert station_id is not None
    await db_run(request, lambda s: readiness.set_progress(s, station_id, check_id, state))
    return web.json_response({"id": check_id, "state": state})


@routes.post("/api/stations/{code}/readiness/{check_id}/report")
@requires("station.readiness")
async def report(request: web.Request) -> web.Response:
    """The station's report (media/readiness_report.py), judged and kept; 422 naming the field if it is malformed
    (the check is then closed red, so that the page does not wait for it)."""
    # The body has arrived whole (app.body_deadline_middleware): the station's clock is compared with this instant.
    received = utcnow()
    own_station(request, "reports only on its own readiness checks")
    check_id = path_int(request, "check_id")
    body = await read_json(request)
    who = identity(request)
    station_id = who.station_id
    assert station_id is not None
    limits = Limits.of(request.app[CONFIG])
    check, error = await db_run(request, lambda s: readiness.take_report(s, station_id, check_id, body, received,
                                                                           limits, who.actor))
    if error is not None:
        raise ApiError(422, error.message, error.where)
    return web.json_response({"id": check.id, "state": check.state, "ok": check.ok})


# --- the admin's side -----------------------------------------------------------------------------------------


@routes.post("/api/readiness/runs")
@requires("readiness.run")
async def start_run(request: web.Request) -> web.Response:
    """{"stations": ["st1", ...]} or {"stations": "all"}: ask each station's agent for a check (201). Test
    recordings older than `readiness_keep_days` are deleted on the way (readiness.purge_media)."""
    f = Fields(await read_json(request), allowed={"stations"})
    value = f.obj.get("stations")
    codes: list[str] | None = None
    if value != "all":
        if not isinstance(value, list) or not 1 <= len(value) <= 500:
            raise ApiError(422, 'expected "all" or a list of 1 to 500 station codes', "stations")
        for i, code in enumerate(value):
            if not isinstance(code, str) or not CODE_RE.fullmatch(code):
                raise ApiError(422, f"not a station code (must match {CODE_RE.pattern})", f"stations[{i}]")
        codes = value
    cfg, who = request.app[CONFIG], identity(request)

    def start(s: Session) -> tuple[int, list[str], list[str]]:
        _expire(request, s)
        run = readiness.start_run(s, who.actor, codes, cfg.readiness_seconds)
        orphans = readiness.purge_media(s, who.actor, utcnow(), cfg.readiness_keep_days)
        return run.id, [c["station"] for c in readiness.run_status(s, run.id)["checks"]], orphans

    run_id, stations, orphans = await db_run(request, start)
    for code in stations:
        request.app[WAKE].setdefault(code, asyncio.Event()).set()
    storage = request.app[STORAGE]
    for sha in orphans:  # after the commit: a failure leaves an unreferenced blob, never a dangling row
        await asyncio.to_thread(storage.delete, sha)
    return web.json_response({"id": run_id, "stations": stations, "status_url": f"/api/readiness/runs/{run_id}"},
                             status=201)


@routes.get("/api/readiness/runs/{run_id}", allow_head=False)
@requires("readiness.run")
async def run_status(request: web.Request) -> web.Response:
    run_id = path_int(request, "run_id")

    def q(s: Session) -> dict[str, Any]:
        _expire(request, s)
        return readiness.run_status(s, run_id)

    return web.json_response(await db_run(request, q), headers={"Cache-Control": "no-store"})


@routes.get("/api/readiness", allow_head=False)
@requires("readiness.run")
async def board_json(request: web.Request) -> web.Response:
    """Every station: online, its latest check (state, ready or not, each item's texts); the latest runs."""
    lang, online = lang_of(request), _online(request.app)

    def q(s: Session) -> dict[str, Any]:
        _expire(request, s)
        return readiness.board(s, lang)

    board = await db_run(request, q)
    for st in board["stations"]:
        st["online"] = st["code"] in online
    return web.json_response(board, dumps=_dumps)


def _when(request: web.Request) -> Any:
    zone = zoneinfo.ZoneInfo(request.app[CONFIG].timezone)

    def when(moment: dt.datetime | None) -> str:
        return "" if moment is None else moment.astimezone(zone).strftime("%d.%m.%Y %H:%M:%S")

    return when


@routes.get("/admin/readiness", allow_head=False)
@requires("readiness.run")
async def page(request: web.Request) -> web.Response:
    """The readiness page: each station's latest check as a green/red table, the buttons, the runs (the acts)."""
    lang, online, who = lang_of(request), _online(request.app), identity(request)

    def q(s: Session) -> dict[str, Any]:
        _expire(request, s)
        return readiness.board(s, lang)

    board = await db_run(request, q)
    for st in board["stations"]:
        st["online"] = st["code"] in online
    running = next((r["id"] for r in board["runs"] if not r["finished"]), None)
    meta = {"csrf-token": who.csrf_token or "", "readiness-running": str(running or "")}
    context = {"meta": meta, "texts": section(lang, "readiness"), "when": _when(request), **board,
               "seconds": request.app[CONFIG].readiness_seconds, "active": readiness.ACTIVE}
    return render(request, "readiness.html", context, headers={"Cache-Control": "no-store"})


@routes.get("/admin/readiness/runs/{run_id}", allow_head=False)
@requires("readiness.run")
async def run_page(request: web.Request) -> web.Response:
    """One run: the readiness act as a page (date, who ran it, each station's table), with its PDF."""
    run_id, lang = path_int(request, "run_id"), lang_of(request)

    def q(s: Session) -> dict[str, Any]:
        _expire(request, s)
        return readiness.run_view(s, run_id, lang)

    run = await db_run(request, q)
    return render(request, "readiness_run.html", {"run": run, "when": _when(request), "active": readiness.ACTIVE},
                  headers={"Cache-Control": "no-store"})


@routes.get("/admin/readiness/runs/{run_id}/act.pdf", allow_head=False)
@requires("readiness.run")
async def act(request: web.Request) -> web.Response:
    """The readiness act (акт готовности) as a PDF, in Russian; every print is audited."""
    run_id, who = path_int(request, "run_id"), identity(request)

    def q(s: Session) -> dict[str, Any]:
        _expire(request, s)
        run = readiness.run_view(s, run_id, "ru")
        audit.append(s, who.actor, readiness.ACT, f"readiness:{run_id}", {"format": "pdf"})
        return run

    run = await db_run(request, q)
    body = await asyncio.to_thread(act_pdf, run, request.app[CONFIG].timezone, utcnow())
    return web.Response(body=body, headers={"Content-Type": "application/pdf",
                                            "Content-Disposition": f'attachment; filename="readiness-act-{run_id}.pdf"',
                                            "Cache-Control": "no-store"})


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, default=lambda o: o.isoformat() if isinstance(o, dt.datetime) else o)
