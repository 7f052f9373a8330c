"""Flags made in the observation room (rules in review_server/flags.py), their lists and the day's page.

- ``POST /api/live/{station}/flags`` (flags.make: observers, examiners of the station, admins): ``{"kind",
  "text"?, "camera"?, "media_t"?, "attempt_id"?}``: the moment of the station's live picture `camera` at its
  recording-clock time `media_t` (what the page's player showed), or, with neither, the moment the server got it.
  The attempt is the one named (it must be the station's), else the one running at the station (its live meta,
  else the day's schedule: routes/live_attempt.py). 201 with the flag.
- ``POST /api/flags/{flag_id}/withdraw`` (flags.make) ``{"reason"}``: its author only (403 for anyone else).
- ``GET /api/attempts/{attempt_id}/flags``, ``GET /api/flags?day=YYYY-MM-DD[&mine=1]`` (flags.view).
- ``GET /flags?day=YYYY-MM-DD`` (flags.view): the day's flags for the commission's chair, linked to the attempt
  page at the moment flagged.
Examiners make and see flags only on the stations assigned to them (another station reads as missing: scope.py).
Every flag and every withdrawal is audited; nothing deletes a flag.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import zoneinfo
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import flags
from ..i18n import lang_of
from ..live import LIVE_HUB, NAME_RE
from ..models import Attempt, ExaminerAssignment, Recording, Station
from ..roles import SCOPED_TO_ASSIGNMENTS, requires
from ..validate import CODE_RE, Fields, path_ident, path_int
from ..web import CONFIG, ApiError, db_run, identity, read_json, render
from .exam_clock import _day_attempts
from .live_attempt import _meta, current_of
from .scope import examiner_may

routes = web.RouteTableDef()
NO_STORE = {"Cache-Control": "no-store"}
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII digits only: isdigit() takes "٢"


def _refused(exc: flags.FlagError) -> ApiError:
    return ApiError(exc.status, exc.error, exc.where)


def _live_edge(request: web.Request, station: str, camera: str) -> tuple[float, dt.datetime] | None:
    """The station's newest live chunk of `camera`: its recording-clock time and when it arrived (server clock)."""
    channel = request.app[LIVE_HUB].channels.get((station, camera))
    if channel is None or channel.init is None or channel.received_at == 0.0:
        return None
    arrived = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=time.monotonic() - channel.received_at)
    return channel.last_t, arrived


def _running_attempt(request: web.Request, station: str) -> str | None:
    """The attempt at the station now: its live meta says, else the day's schedule (as the marking panel)."""
    meta_attempt = _meta(request, station).get("attempt_id")
    if isinstance(meta_attempt, str) and CODE_RE.fullmatch(meta_attempt):
        return meta_attempt
    scheduled = current_of(_day_attempts(request), station, dt.datetime.now(dt.UTC))
    found = scheduled.get("attempt_id") if scheduled else None
    return found if isinstance(found, str) and CODE_RE.fullmatch(found) else None


@routes.post("/api/live/{station}/flags")
@requires("flags.make")
async def add_flag(request: web.Request) -> web.Response:
    station = path_ident(request, "station", NAME_RE)
    who = identity(request)

    def visible(s: Session) -> None:
        st = s.scalar(select(Station).where(Station.code == station))
        if st is None or not examiner_may(s, who, st.id, None):
            raise ApiError(404, f"no station {station!r}", "URL station")

    # Whose station it is is decided before the body is read: another room's station reads as missing whatever
    # is sent (its body's errors and its live picture would otherwise tell it apart).
    await db_run(request, visible)
    f = Fields(await read_json(request), allowed={"kind", "text", "camera", "media_t", "attempt_id"})
    asked_attempt = f.ident("attempt_id", required=False)
    kind = f.choice("kind", flags.KINDS)
    text = f.name("text", required=False, max_len=flags.TEXT_MAX)
    text = text.strip() if text is not None else None
    if kind == "other" and not text:
        raise ApiError(422, "say what was seen (kind 'other' needs its text)", "text")
    if kind != "other" and text is not None:
        raise ApiError(422, "only kind 'other' carries a text", "text")
    camera = f.ident("camera", NAME_RE, required=False)
    media_t = f.number("media_t", required=False, lo=0.0, hi=1e7)
    if (camera is None) != (media_t is None):
        raise ApiError(422, "camera and media_t come together (the live picture and its time)",
                       "media_t" if camera is not None else "camera")
    at = dt.datetime.now(dt.UTC)
    if camera is not None and media_t is not None:
        edge = _live_edge(request, station, camera)
        if edge is None:
            raise ApiError(422, f"no live picture from {station}/{camera} to flag", "camera")
        try:
            at = flags.moment_seen(media_t, *edge)
        except flags.FlagError as exc:
            raise _refused(exc) from None
    attempt_id = asked_attempt or _running_attempt(request, station)

    def q(s: Session) -> dict[str, Any]:
        st = s.scalar(select(Station).where(Station.code == station))
        if st is None or not examiner_may(s, who, st.id, None):
            raise ApiError(404, f"no station {station!r}", "URL station")
        att = s.get(Attempt, attempt_id) if attempt_id else None
        if asked_attempt is not None and (att is None or att.station_id != st.id):
            raise ApiError(422, f"no attempt {asked_attempt!r} at station {station}", "attempt_id")
        known = attempt_id if att is None or att.station_id == st.id else None  # never another station's attempt
        flag = flags.add(s, station=st, attempt_id=known, camera=camera, media_t=media_t, at=at, kind=kind,
                         text=text, actor=who.actor, ip=request.remote)
        return flags.as_dict(flag, st.code)

    return web.json_response(await db_run(request, q), status=201, headers=NO_STORE)


@routes.post("/api/flags/{flag_id}/withdraw")
@requires("flags.make")
async def withdraw_flag(request: web.Request) -> web.Response:
    flag_id = path_int(request, "flag_id")
    who = identity(request)
    f = Fields(await read_json(request), allowed={"reason"})
    reason = (f.name("reason", max_len=flags.REASON_MAX) or "").strip()
    if not reason:
        raise ApiError(422, "say why the flag is withdrawn", "reason")

    def q(s: Session) -> dict[str, Any]:
        try:
            flag = flags.withdraw(s, flag_id, who.actor, reason, request.remote)
        except flags.FlagError as exc:
            raise _refused(exc) from None
        st = s.get(Station, flag.station_id)
        return flags.as_dict(flag, st.code if st else "—")

    return web.json_response(await db_run(request, q), headers=NO_STORE)


def _my_stations(s: Session, request: web.Request) -> set[int] | None:
    """The stations an examiner is assigned to (on any day); None for a role that sees every station."""
    who = identity(request)
    if who.principal not in SCOPED_TO_ASSIGNMENTS:
        return None
    return set(s.scalars(select(ExaminerAssignment.station_id).where(ExaminerAssignment.user_id == who.user_id)))


@routes.get("/api/attempts/{attempt_id}/flags", allow_head=False)
@requires("flags.view")
async def attempt_flags(request: web.Request) -> web.Response:
    attempt_id = path_ident(request, "attempt_id")

    def q(s: Session) -> list[dict[str, Any]]:
        mine = _my_stations(s, request)
        codes = None if mine is None else {st.code for st in s.scalars(select(Station).where(Station.id.in_(mine)))}
        found = [f for f in flags.of_attempt(s, attempt_id) if codes is None or f["station"] in codes]
        att = s.get(Attempt, attempt_id)
        if att is None and not found or att is not None and mine is not None and att.station_id not in mine:
            raise ApiError(404, f"no attempt {attempt_id!r}", "URL attempt_id")
        return found

    return web.json_response({"attempt_id": attempt_id, "flags": await db_run(request, q)}, headers=NO_STORE)


def _day(request: web.Request) -> dt.date:
    raw = request.query.get("day")
    if raw is None:
        return dt.datetime.now(zoneinfo.ZoneInfo(request.app[CONFIG].timezone)).date()
    try:
        if _DAY.fullmatch(raw):
            return dt.date.fromisoformat(raw)
    except ValueError:
        pass
    raise ApiError(400, "expected a date YYYY-MM-DD", "query day")


async def _day_flags(request: web.Request, day: dt.date, mine: bool) -> list[dict[str, Any]]:
    author = identity(request).actor if mine else None
    timezone = request.app[CONFIG].timezone
    return await db_run(request, lambda s: flags.of_day(s, day, timezone, _my_stations(s, request), author))


@routes.get("/api/flags", allow_head=False)
@requires("flags.view")
async def day_flags(request: web.Request) -> web.Response:
    day = _day(request)
    mine = request.query.get("mine", "0")
    if mine not in ("0", "1"):
        raise ApiError(400, "expected 0 or 1", "query mine")
    rows = await _day_flags(request, day, mine == "1")
    return web.json_response({"day": day.isoformat(), "flags": rows}, headers=NO_STORE)


def _seek_href(flag: dict[str, Any], starts: dict[str, dt.datetime | None], lang: str) -> str | None:
    """The attempt page at the moment flagged (its first recording's timeline), if the attempt is known."""
    attempt_id = flag["attempt_id"]
    if attempt_id is None or attempt_id not in starts:
        return None
    t = flags.place(flag, starts[attempt_id])
    query = [f"t={max(t, 0.0):.1f}"] if t is not None else []
    query += ["lang=en"] if lang == "en" else []
    return f"/attempts/{attempt_id}" + ("?" + "&".join(query) if query else "")


@routes.get("/flags", allow_head=False)
@requires("flags.view")
async def flags_page(request: web.Request) -> web.Response:
    day = _day(request)
    rows = await _day_flags(request, day, False)
    ids = {f["attempt_id"] for f in rows if f["attempt_id"]}

    def first_parts(s: Session) -> dict[str, dt.datetime | None]:
        # each attempt's first recording's media time 0 (the attempt page opens on its first recording)
        out: dict[str, dt.datetime | None] = {a: None for a in s.scalars(select(Attempt.id).where(Attempt.id.in_(ids)))}
        for rec in s.scalars(select(Recording).where(Recording.attempt_id.in_(ids)).order_by(Recording.key)):
            if rec.attempt_id is not None and out.get(rec.attempt_id) is None:
                out[rec.attempt_id] = rec.media_from
        return out

    starts = await db_run(request, first_parts)
    tz = zoneinfo.ZoneInfo(request.app[CONFIG].timezone)
    lang = lang_of(request)
    items = [{"flag": f, "href": _seek_href(f, starts, lang),
              "time": dt.datetime.fromisoformat(f["at"]).astimezone(tz).strftime("%H:%M:%S")} for f in rows]
    return render(request, "flags.html", {"day": day, "items": items, "shown_day": day.strftime("%d.%m.%Y"),
                                          "prev_day": (day - dt.timedelta(days=1)).isoformat(),
                                          "next_day": (day + dt.timedelta(days=1)).isoformat()},
                  headers=NO_STORE)
