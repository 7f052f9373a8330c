"""After the day: /days/{id}/completeness (admins and archivists: what is missing, with links; the media re-hash),
closing the day (admin; locks its marks, day_lock.py) and reopening it (admin, with a reason). Both audited, the
close with what was missing then and the protocols' SHA-256 as built at that moment.

A day with something missing closes only with a reason (the missing list goes into the audit row with it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import zoneinfo
from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from .. import audit, media_check
from ..day_completeness import Report, build_report
from ..day_lock import DAY_CLOSE, DAY_REOPEN, closure
from ..i18n import lang_of, section
from ..models import DayClosure, ExamDay, utcnow
from ..protocol import ProtocolError, build, to_pdf
from ..roles import requires
from ..validate import path_int
from ..web import CONFIG, DB, STORAGE, ApiError, db_run, identity, read_form, render

routes = web.RouteTableDef()
CHECKS = web.AppKey("day_media_checks", dict)  # day id -> (the running re-hash task, its stop event): one per day
REASON_MAX = 2000


def _planned(request: web.Request) -> dict[str, float]:
    """Planned reading + performing seconds of the schedule file's attempts (a day imported with the CLI)."""
    path = request.app[CONFIG].schedule_file
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
    out = {}
    for a in data.get("attempts", []) if isinstance(data, dict) else []:
        if isinstance(a, dict) and isinstance(a.get("attempt_id"), str):
            r, p = a.get("reading_s", 30), a.get("performing_s", 510)
            if isinstance(r, int | float) and isinstance(p, int | float):
                out[a["attempt_id"]] = float(r) + float(p)
    return out


def setup(app: web.Application) -> None:
    """The running media checks; stopped (unfinished, shown so) when the server shuts down."""
    app[CHECKS] = {}

    async def stop(app: web.Application) -> None:
        for task, event in app[CHECKS].values():
            event.set()
            await asyncio.gather(task, return_exceptions=True)

    app.on_cleanup.append(stop)


def _running(request: web.Request, day_id: int) -> bool:
    entry = request.app[CHECKS].get(day_id)
    return entry is not None and not entry[0].done()


async def _report(request: web.Request, day_id: int) -> Report:
    cfg = request.app[CONFIG]
    planned = await asyncio.to_thread(_planned, request)

    def q(s: Session) -> Report:
        try:
            return build_report(s, day_id, cfg.timezone, cfg.examiners_per_station, planned,
                                _running(request, day_id))
        except LookupError:
            raise ApiError(404, f"no exam day {day_id}", "URL day_id") from None

    return await db_run(request, q)


def _text(lang: str, kind: str, params: dict[str, Any]) -> str:
    t = section(lang, "completeness")
    text = t.get(f"miss.{kind}", kind)
    shown = dict(params)
    for key in ("gap", "note", "problem"):
        if key in shown:
            shown[key] = t.get(f"{key}.{shown[key]}", shown[key])
    try:
        return text.format(**shown)
    except (KeyError, IndexError, ValueError):
        return text


async def _page(request: web.Request, error: dict[str, str] | None = None, status: int = 200,
                form: dict[str, str] | None = None) -> web.Response:
    day_id = path_int(request, "day_id")
    rep = await _report(request, day_id)
    lang, who = lang_of(request), identity(request)
    t = section(lang, "completeness")
    missing = [{"text": _text(lang, m.kind, m.params), "link": m.link, "attempt_id": m.attempt_id, "kind": m.kind}
               for m in rep.missing]
    attempts = [{"a": a, "missing": [_text(lang, m.kind, m.params) for m in a.missing]} for a in rep.attempts]
    done = request.query.get("done", "")
    row = rep.closure
    tz = zoneinfo.ZoneInfo(request.app[CONFIG].timezone)
    check = rep.media_check
    ctx = {
        "rep": rep, "day": {"id": rep.day.id, "date": rep.day.day.strftime("%d.%m.%Y"), "title": rep.day.title},
        "missing": missing, "attempts": attempts, "check": check, "check_by": _who(check.started_by),
        "check_at": check.finished_at.astimezone(tz).strftime("%d.%m.%Y %H:%M") if check.finished_at else "",
        "closed": None if row is None else {"at": row.closed_at.astimezone(tz).strftime("%d.%m.%Y %H:%M"),
                                            "by": _who(row.closed_by), "reason": row.reason, "missing": row.missing},
        "can_close": who.principal == "admin", "csrf": who.csrf_token or "", "error": error, "form": form or {},
        "notice": t.get(f"done.{done}", "") if done else "",
    }
    return render(request, "days_completeness.html", ctx, status=status)


def _who(actor: str) -> str:
    """An audit actor as a page shows it: the login ("user:admin" → "admin")."""
    return actor.removeprefix("user:")


@routes.get("/days/{day_id}/completeness", allow_head=False)
@requires("days.review")
async def completeness_page(request: web.Request) -> web.Response:
    return await _page(request)


def _back(request: web.Request, day_id: int, done: str, anchor: str = "") -> web.Response:
    lang = "&lang=en" if lang_of(request) == "en" else ""
    return web.Response(status=303, headers={"Location": f"/days/{day_id}/completeness?done={done}{lang}{anchor}"})


def _error(request: web.Request, field: str, key: str, **params: Any) -> dict[str, str]:
    t = section(lang_of(request), "completeness")
    return {"field": field, "label": t.get(f"field.{field}", field), "text": t[f"err.{key}"].format(**params)}


@routes.post("/days/{day_id}/media-check")
@requires("days.review")
async def media_check_start(request: web.Request) -> web.Response:
    """Re-hash every fragment of the day's attempts, on a worker thread; the page shows its progress."""
    day_id = path_int(request, "day_id")
    who = identity(request)
    if _running(request, day_id):
        return await _page(request, _error(request, "", "check_running"), 409)

    def begin(s: Session) -> None:
        if s.get(ExamDay, day_id) is None:
            raise ApiError(404, f"no exam day {day_id}", "URL day_id")
        media_check.begin(s, day_id, who.actor)

    await db_run(request, begin)
    app, stop = request.app, threading.Event()
    task = asyncio.create_task(asyncio.to_thread(media_check.run, app[DB], app[STORAGE], day_id, stop))
    app[CHECKS][day_id] = (task, stop)
    return _back(request, day_id, "check_started", "#media")


def _protocol_hashes(s: Session, day: ExamDay, codes: list[str]) -> dict[str, str]:
    out = {}
    for code in codes:
        try:
            out[code] = hashlib.sha256(to_pdf(build(s, day.day, code))).hexdigest()
        except ProtocolError as exc:
            out[code] = f"not built: {exc}"
    return out


@routes.post("/days/{day_id}/close")
@requires("days.close")
async def close_day(request: web.Request) -> web.Response:
    """Close the day: its marks are locked. With something missing, only with a reason (form field "reason")."""
    day_id = path_int(request, "day_id")
    form = await read_form(request)
    reason = form.get("reason", "").strip()
    if len(reason) > REASON_MAX:
        return await _page(request, _error(request, "reason", "too_long", limit=REASON_MAX), 422, form)
    rep = await _report(request, day_id)
    if rep.closure is not None:
        return await _page(request, _error(request, "", "closed_already"), 409, form)
    if not rep.attempts:
        return await _page(request, _error(request, "", "no_attempts"), 409, form)
    if rep.missing and not reason:
        return await _page(request, _error(request, "reason", "reason_missing", n=len(rep.missing)), 422, form)
    who = identity(request)
    summary = rep.summary()
    codes = [p["code"] for p in rep.protocols]

    def close(s: Session) -> None:
        day = s.get(ExamDay, day_id)
        if day is None or closure(s, day_id) is not None:  # closed meanwhile by another admin
            raise ApiError(409, f"exam day {day_id} is closed already", "URL day_id")
        s.add(DayClosure(exam_day_id=day_id, closed_by=who.actor, reason=reason, missing=len(rep.missing)))
        audit.append(s, who.actor, DAY_CLOSE, str(day_id), {
            "day": day.day.isoformat(), "title": day.title, "reason": reason, **summary,
            "protocol_pdf_sha256": _protocol_hashes(s, day, codes)})

    await db_run(request, close)
    return _back(request, day_id, "closed")


@routes.post("/days/{day_id}/reopen")
@requires("days.close")
async def reopen_day(request: web.Request) -> web.Response:
    """Reopen a closed day (admin, form field "reason" required): marks may change again; audited."""
    day_id = path_int(request, "day_id")
    form = await read_form(request)
    reason = form.get("reason", "").strip()
    if not reason:
        return await _page(request, _error(request, "reopen_reason", "reason_required"), 422, form)
    if len(reason) > REASON_MAX:
        return await _page(request, _error(request, "reopen_reason", "too_long", limit=REASON_MAX), 422, form)
    who = identity(request)

    def reopen(s: Session) -> bool:
        if s.get(ExamDay, day_id) is None:
            raise ApiError(404, f"no exam day {day_id}", "URL day_id")
        row = closure(s, day_id)
        if row is None:
            return False
        row.reopened_at, row.reopened_by, row.reopen_reason = utcnow(), who.actor, reason
        audit.append(s, who.actor, DAY_REOPEN, str(day_id), {"reason": reason, "closed_at": row.closed_at.isoformat(),
                                                             "closed_by": row.closed_by})
        return True

    if not await db_run(request, reopen):
        return await _page(request, _error(request, "", "not_closed"), 409, form)
    return _back(request, day_id, "reopened")
