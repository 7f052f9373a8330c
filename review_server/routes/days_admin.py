"""Exam day setup without JSON (admin): /admin/days (the days, a new day), /admin/days/{id} (the plan, stations and
their tasks, examiners, the schedule in circuits with its slots editable, fixing it, the route sheets), and
/admin/days/{id}/candidates (the centre's XLSX/CSV list: upload, map the columns, check, import). The work is
day_plan.py's and candidate_list.py's; this module reads forms and renders templates/days_*.html.

Forms post back here (CSRF field, checked by the auth middleware) and answer 303 to the page on success, or the
page again with the refused field named (422, 404 or 409) and nothing changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import zoneinfo
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import audit, route_sheets
from ..candidate_list import FIELDS, ListFileError, Problem, Sheet, guess_mapping, parse_rows, read_file
from ..circuits import PlanError, Timing, circuits
from ..day_lock import closure
from ..day_plan import (
    DAY_ROUTE_SHEETS,
    DayError,
    assign,
    assignments,
    change_slot,
    checklist_choices,
    create_day,
    day_candidates,
    day_stations,
    delete_slot,
    fix_day,
    generate_slots,
    hhmm,
    import_candidates,
    load,
    seconds,
    set_stations,
    slots_of,
    store_upload,
    unassign,
    update_plan,
    upload_of,
)
from ..i18n import lang_of, section
from ..models import (
    Attempt,
    CandidatePersonal,
    DayCandidate,
    DayPlan,
    DaySlot,
    ExamDay,
    Specialty,
    Station,
    User,
)
from ..roles import Role, requires
from ..validate import path_int
from ..web import CONFIG, ApiError, db_run, identity, read_form, render

routes = web.RouteTableDef()
PREVIEW_ROWS = 5
TOP_ERRORS = frozenset({"fixed", "closed", "no_plan"})  # about the whole day: said at the top
DEFAULT = checklist_choices()[0] if checklist_choices() else None


# -- helpers ---------------------------------------------------------------------------------------------------


def _href(request: web.Request, path: str, **query: Any) -> str:
    q = {k: v for k, v in query.items() if v is not None}
    if lang_of(request) == "en":
        q["lang"] = "en"
    return path + ("?" + urlencode(q) if q else "")


def _see(request: web.Request, path: str, **query: Any) -> web.Response:
    return web.Response(status=303, headers={"Location": _href(request, path, **query)})


def _say(lang: str, field: str, key: str, params: dict[str, Any]) -> dict[str, str]:
    """A refusal in the reader's language: {"field", "label", "text"}."""
    t = section(lang, "days")
    label = ""
    if field.startswith("task_"):
        label = t["field.task"].format(code=field[5:])
    elif field:
        label = t.get(f"field.{field}", field)
    text = t.get(f"err.{key}", key)
    if "other_field" in params:
        params = params | {"other_field": t.get(f"field.{params['other_field']}", params["other_field"])}
    with contextlib.suppress(KeyError, IndexError, ValueError):
        text = text.format(**params)
    return {"field": field, "label": label, "text": text}


def _tz(request: web.Request) -> str:
    return request.app[CONFIG].timezone


def _day_id(request: web.Request) -> int:
    return path_int(request, "day_id")


def _timing(form: dict[str, str]) -> Timing:
    return Timing(seconds(form.get("reading_s", ""), "reading_s"),
                  seconds(form.get("performing_s", ""), "performing_s"),
                  seconds(form.get("changeover_s", ""), "changeover_s", lo=0))


def _status(plan: DayPlan | None, closed: bool) -> str:
    if closed:
        return "closed"
    if plan is None:
        return "imported"
    return "fixed" if plan.fixed_at is not None else "draft"


# -- the days ----------------------------------------------------------------------------------------------------


def _days_context(s: Session) -> dict[str, Any]:
    rows = []
    for day in s.scalars(select(ExamDay).order_by(ExamDay.day.desc(), ExamDay.id.desc())):
        plan = s.get(DayPlan, day.id)
        sp = s.get(Specialty, plan.specialty_id) if plan else None
        rows.append({
            "id": day.id, "day": day.day.strftime("%d.%m.%Y"), "title": day.title, "specialty": sp.name if sp else "",
            "status": _status(plan, closure(s, day.id) is not None),
            "candidates": s.scalar(select(func.count()).where(DayCandidate.exam_day_id == day.id)) or 0,
            "attempts": s.scalar(select(func.count()).where(Attempt.exam_day_id == day.id)) or 0,
        })
    specialties = [{"code": x.code, "name": x.name} for x in s.scalars(select(Specialty).order_by(Specialty.name))]
    return {"days": rows, "specialties": specialties}


def _new_day_defaults() -> dict[str, str]:
    return {"day": dt.date.today().isoformat(), "title": "", "specialty": "", "specialty_code": "",
            "specialty_name": "", "starts_at": "09:00",
            "reading_s": str(DEFAULT.reading_s if DEFAULT else 30),
            "performing_s": str(DEFAULT.performing_s if DEFAULT else 510),
            "changeover_s": str(DEFAULT.changeover_s if DEFAULT else 60)}


@routes.get("/admin/days", allow_head=False)
@requires("days.manage")
async def days_page(request: web.Request) -> web.Response:
    who = identity(request)
    ctx = await db_run(request, _days_context)
    return render(request, "days_list.html", ctx | {"form": _new_day_defaults(), "error": None,
                                                     "csrf": who.csrf_token or ""})


@routes.post("/admin/days")
@requires("days.manage")
async def days_create(request: web.Request) -> web.Response:
    form = await read_form(request)
    who = identity(request)
    values = _new_day_defaults() | {k: v for k, v in form.items() if k in _new_day_defaults()}

    def create(s: Session) -> int:
        try:
            day = dt.date.fromisoformat(form.get("day", ""))
        except ValueError:
            raise DayError("day", "date_format") from None
        title = form.get("title", "").strip()
        if not title or len(title) > 200:
            raise DayError("title", "title")
        chosen = form.get("specialty", "")
        code = chosen if chosen else form.get("specialty_code", "").strip()
        name = "" if chosen else form.get("specialty_name", "").strip()
        if not code:
            raise DayError("specialty", "specialty_required")
        return create_day(s, day, title, code, name[:200], _timing(form), hhmm(form.get("starts_at", ""), "starts_at"),
                          who.actor).id

    try:
        day_id = await db_run(request, create)
    except DayError as exc:
        ctx = await db_run(request, _days_context)
        return render(request, "days_list.html", ctx | {
            "form": values, "error": _say(lang_of(request), exc.field, exc.key, exc.params),
            "csrf": who.csrf_token or ""}, status=exc.status)
    return _see(request, f"/admin/days/{day_id}", done="created")


# -- one day -----------------------------------------------------------------------------------------------------


def _day_context(s: Session, day_id: int, timezone: str) -> dict[str, Any]:
    day, plan = load(s, day_id)
    tz = zoneinfo.ZoneInfo(timezone)
    closed = closure(s, day.id)
    sp = s.get(Specialty, plan.specialty_id) if plan else None
    chosen = {st.code: stem for st, stem in day_stations(s, day.id)}
    stations = [{"code": st.code, "name": st.name, "used": st.code in chosen, "checklist": chosen.get(st.code, "")}
                for st in s.scalars(select(Station).order_by(Station.code))]
    titles = {c.stem: c.title for c in checklist_choices()}
    try:
        rounds = circuits([(c, stem) for c, stem in chosen.items()]) if chosen else []
        circuit_error = None
    except PlanError as exc:
        rounds, circuit_error = [], {"key": exc.key, "params": exc.params}
    listed = day_candidates(s, day.id)
    named = set(s.scalars(select(CandidatePersonal.candidate_id).where(
        CandidatePersonal.candidate_id.in_([dc.candidate_id for dc, _ in listed]))))
    streams: dict[str, dict[str, Any]] = {}
    for dc, _number in listed:
        entry = streams.setdefault(dc.stream or "1", {"label": dc.stream or "1", "time": dc.starts_at, "count": 0})
        entry["count"] += 1
    slots = [{"id": slot.id, "attempt_id": slot.attempt_id,
              "at": slot.reading_starts_at.astimezone(tz).strftime("%H:%M"), "station": st.code,
              "task": titles.get(chosen.get(st.code, ""), ""), "number": number}
             for slot, st, number in slots_of(s, day.id)]
    examiners = [{"id": a.id, "login": u.login, "name": u.display_name, "station": st.code,
                  "every_day": a.exam_day_id is None} for a, u, st in assignments(s, day.id)]
    users = [{"login": u.login, "name": u.display_name} for u in s.scalars(
        select(User).where(User.role == Role.EXAMINER, User.active.is_(True)).order_by(User.login))]
    return {
        "day": {"id": day.id, "date": day.day.strftime("%d.%m.%Y"), "iso": day.day.isoformat(), "title": day.title},
        "plan": None if plan is None else {
            "reading_s": plan.reading_s, "performing_s": plan.performing_s, "changeover_s": plan.changeover_s,
            "starts_at": plan.starts_at, "fixed_at": plan.fixed_at.astimezone(tz).strftime("%d.%m.%Y %H:%M")
            if plan.fixed_at else None, "fixed_by": plan.fixed_by},
        "specialty": {"code": sp.code, "name": sp.name} if sp else None,
        "status": _status(plan, closed is not None),
        "editable": plan is not None and plan.fixed_at is None and closed is None,
        "stations": stations,
        "checklists": [{"stem": c.stem, "title": c.title} for c in checklist_choices()],
        "titles": titles,
        "circuits": [[{"station": code, "task": titles.get(stem, stem)} for code, stem in r] for r in rounds],
        "circuit_error": circuit_error,
        "candidates": {"count": len(listed), "named": len(named), "streams": list(streams.values())},
        "numbers": [number for _dc, number in listed],
        "slots": slots,
        "examiners": examiners,
        "examiner_users": users,
        "day_stations": sorted(chosen),
        "attempts": s.scalar(select(func.count()).where(Attempt.exam_day_id == day.id)) or 0,
    }


# Which section of the day page shows the outcome of an action (the page opens at that section).
DONE_SECTION = {"plan": "plan", "stations": "stations", "imported": "candidates", "assigned": "examiners",
                "unassigned": "examiners", "generated": "schedule", "slot": "schedule", "slot_deleted": "schedule",
                "fixed": "schedule"}


async def _day_page(request: web.Request, day_id: int, error: dict[str, str] | None = None, status: int = 200,
                    form: dict[str, str] | None = None, here: str = "") -> web.Response:
    who = identity(request)
    try:
        ctx = await db_run(request, lambda s: _day_context(s, day_id, _tz(request)))
    except DayError as exc:
        raise ApiError(exc.status, f"no exam day {day_id}", "URL day_id") from None
    t = section(lang_of(request), "days")
    done = request.query.get("done", "")
    notice = t.get(f"done.{done}", "").format(n=request.query.get("n", "")) if done else ""
    if ctx["circuit_error"]:
        ce = ctx["circuit_error"]
        ctx["circuit_error"] = _say(lang_of(request), "", ce["key"], ce["params"])["text"]
    if error is None:
        here = DONE_SECTION.get(done, "")
    return render(request, "days_day.html", ctx | {"error": error, "notice": notice, "csrf": who.csrf_token or "",
                                                   "form": form or {}, "here": here}, status=status)


@routes.get("/admin/days/{day_id}", allow_head=False)
@requires("days.manage")
async def day_page(request: web.Request) -> web.Response:
    return await _day_page(request, _day_id(request))


async def _act(request: web.Request, work: Any, done: str, anchor: str = "", **query: Any) -> web.Response:
    """Run a change; 303 back to the day page at the section acted on (anchor), or the page again naming what was
    refused in that section."""
    day_id = _day_id(request)
    form = await read_form(request)
    who = identity(request)
    try:
        n = await db_run(request, lambda s: work(s, day_id, form, who.actor))
    except DayError as exc:
        if exc.key == "no_day":
            raise ApiError(404, f"no exam day {day_id}", "URL day_id") from None
        return await _day_page(request, day_id, _say(lang_of(request), exc.field, exc.key, exc.params), exc.status,
                               form, anchor.lstrip("#") if exc.field or exc.key not in TOP_ERRORS else "")
    resp = _see(request, f"/admin/days/{day_id}", done=done, n=n if isinstance(n, int) else None, **query)
    resp.headers["Location"] += anchor
    return resp


@routes.post("/admin/days/{day_id}/plan")
@requires("days.manage")
async def day_plan(request: web.Request) -> web.Response:
    def work(s: Session, day_id: int, form: dict[str, str], actor: str) -> None:
        update_plan(s, day_id, _timing(form), hhmm(form.get("starts_at", ""), "starts_at"), actor)

    return await _act(request, work, "plan", "#plan")


@routes.post("/admin/days/{day_id}/stations")
@requires("days.manage")
async def day_stations_post(request: web.Request) -> web.Response:
    def work(s: Session, day_id: int, form: dict[str, str], actor: str) -> None:
        chosen = []
        for st in s.scalars(select(Station).order_by(Station.code)):
            if form.get(f"use_{st.code}"):
                stem = form.get(f"task_{st.code}", "")
                if not stem:
                    raise DayError(f"task_{st.code}", "task_required", code=st.code)
                chosen.append((st.code, stem))
        set_stations(s, day_id, chosen, actor)

    return await _act(request, work, "stations", "#stations")


@routes.post("/admin/days/{day_id}/schedule")
@requires("days.manage")
async def day_generate(request: web.Request) -> web.Response:
    tz = _tz(request)
    return await _act(request, lambda s, day_id, form, actor: generate_slots(s, day_id, tz, actor), "generated",
                      "#schedule")


@routes.post("/admin/days/{day_id}/slots")
@requires("days.manage")
async def day_slot_add(request: web.Request) -> web.Response:
    tz = _tz(request)

    def work(s: Session, day_id: int, form: dict[str, str], actor: str) -> None:
        change_slot(s, day_id, None, form.get("time", ""), form.get("station", ""), form.get("candidate", ""), tz,
                    actor)

    return await _act(request, work, "slot", "#schedule")


def _slot_context(s: Session, day_id: int, slot_id: int, timezone: str) -> dict[str, Any]:
    day, _plan = load(s, day_id)
    slot = s.get(DaySlot, slot_id)
    if slot is None or slot.exam_day_id != day.id:
        raise DayError("", "no_slot", status=404)
    st = s.get(Station, slot.station_id)
    number = next(n for dc, n in day_candidates(s, day.id) if dc.candidate_id == slot.candidate_id)
    return {"day": {"id": day.id, "date": day.day.strftime("%d.%m.%Y"), "title": day.title},
            "slot": {"id": slot.id, "attempt_id": slot.attempt_id, "station": st.code if st else "",
                     "number": number,
                     "at": slot.reading_starts_at.astimezone(zoneinfo.ZoneInfo(timezone)).strftime("%H:%M")},
            "day_stations": [x.code for x, _ in day_stations(s, day.id)],
            "numbers": [n for _dc, n in day_candidates(s, day.id)]}


async def _slot_page(request: web.Request, error: dict[str, str] | None = None, status: int = 200,
                     form: dict[str, str] | None = None) -> web.Response:
    day_id, slot_id = _day_id(request), path_int(request, "slot_id")
    try:
        ctx = await db_run(request, lambda s: _slot_context(s, day_id, slot_id, _tz(request)))
    except DayError as exc:
        raise ApiError(404, f"no slot {slot_id} on exam day {day_id}", "URL slot_id") from exc
    if form:
        ctx["slot"] |= {"at": form.get("time", ""), "station": form.get("station", ""),
                        "number": form.get("candidate", "")}
    return render(request, "days_slot.html", ctx | {"error": error, "csrf": identity(request).csrf_token or ""},
                  status=status)


@routes.get("/admin/days/{day_id}/slots/{slot_id}", allow_head=False)
@requires("days.manage")
async def day_slot_page(request: web.Request) -> web.Response:
    return await _slot_page(request)


@routes.post("/admin/days/{day_id}/slots/{slot_id}")
@requires("days.manage")
async def day_slot_save(request: web.Request) -> web.Response:
    day_id, slot_id = _day_id(request), path_int(request, "slot_id")
    form = await read_form(request)
    who, tz = identity(request), _tz(request)
    try:
        await db_run(request, lambda s: change_slot(s, day_id, slot_id, form.get("time", ""), form.get("station", ""),
                                                    form.get("candidate", ""), tz, who.actor))
    except DayError as exc:
        if exc.status == 404:
            raise ApiError(404, f"no slot {slot_id} on exam day {day_id}", "URL slot_id") from None
        return await _slot_page(request, _say(lang_of(request), exc.field, exc.key, exc.params), exc.status, form)
    resp = _see(request, f"/admin/days/{day_id}", done="slot")
    resp.headers["Location"] += "#schedule"
    return resp


@routes.post("/admin/days/{day_id}/slots/{slot_id}/delete")
@requires("days.manage")
async def day_slot_delete(request: web.Request) -> web.Response:
    slot_id = path_int(request, "slot_id")
    return await _act(request, lambda s, day_id, form, actor: delete_slot(s, day_id, slot_id, actor), "slot_deleted",
                      "#schedule")


@routes.post("/admin/days/{day_id}/fix")
@requires("days.manage")
async def day_fix(request: web.Request) -> web.Response:
    tz = _tz(request)

    def work(s: Session, day_id: int, form: dict[str, str], actor: str) -> int:
        if form.get("confirm") != "yes":
            raise DayError("confirm", "confirm")
        return fix_day(s, day_id, tz, actor).attempts_new

    return await _act(request, work, "fixed", "#schedule")


@routes.post("/admin/days/{day_id}/examiners")
@requires("days.manage")
async def day_examiner_add(request: web.Request) -> web.Response:
    def work(s: Session, day_id: int, form: dict[str, str], actor: str) -> None:
        assign(s, day_id, form.get("examiner", ""), form.get("station", ""), actor)

    return await _act(request, work, "assigned", "#examiners")


@routes.post("/admin/days/{day_id}/examiners/{assignment_id}/delete")
@requires("days.manage")
async def day_examiner_delete(request: web.Request) -> web.Response:
    assignment_id = path_int(request, "assignment_id")
    return await _act(request, lambda s, day_id, form, actor: unassign(s, day_id, assignment_id, actor), "unassigned",
                      "#examiners")


@routes.get("/admin/days/{day_id}/route-sheets/{kind}.pdf", allow_head=False)
@requires("days.manage")
async def day_route_sheets(request: web.Request) -> web.Response:
    day_id, kind = _day_id(request), request.match_info["kind"]
    if kind not in ("candidates", "stations"):
        raise ApiError(404, "expected candidates.pdf or stations.pdf", "URL kind")
    who, tz = identity(request), _tz(request)

    def make(s: Session) -> route_sheets.RouteData:
        try:
            data = route_sheets.gather(s, day_id, tz)
        except DayError:
            raise ApiError(404, f"no exam day {day_id}", "URL day_id") from None
        audit.append(s, who.actor, DAY_ROUTE_SHEETS, str(day_id), {"kind": kind, "lines": len(data.lines)})
        return data

    data = await db_run(request, make)
    body = await asyncio.to_thread(route_sheets.by_candidate if kind == "candidates" else route_sheets.by_station, data)
    name = f"route-sheets-{data.day.isoformat()}-{kind}.pdf"
    return web.Response(body=body, headers={"Content-Type": "application/pdf",
                                            "Content-Disposition": f'inline; filename="{name}"'})


# -- the candidate list ------------------------------------------------------------------------------------------


def _list_context(s: Session, day_id: int) -> dict[str, Any]:
    day, plan = load(s, day_id)
    sp = s.get(Specialty, plan.specialty_id) if plan else None
    return {"day": {"id": day.id, "date": day.day.strftime("%d.%m.%Y"), "title": day.title},
            "specialty": {"code": sp.code, "name": sp.name} if sp else None,
            "editable": plan is not None and plan.fixed_at is None and closure(s, day.id) is None,
            "listed": len(day_candidates(s, day.id))}


def _problems(lang: str, problems: list[Problem]) -> list[dict[str, Any]]:
    return [{"row": p.row, "column": p.column, **_say(lang, p.field, p.key, p.params)} for p in problems]


async def _list_page(request: web.Request, *, upload: dict[str, Any] | None = None, sheet: Sheet | None = None,
                     mapping: dict[str, int | None] | None = None, problems: list[Problem] | None = None,
                     preview: list[dict[str, Any]] | None = None, error: dict[str, str] | None = None,
                     status: int = 200) -> web.Response:
    day_id = _day_id(request)
    try:
        ctx = await db_run(request, lambda s: _list_context(s, day_id))
    except DayError:
        raise ApiError(404, f"no exam day {day_id}", "URL day_id") from None
    lang = lang_of(request)
    columns = [{"index": i, "label": sheet.column_label(i)} for i in range(len(sheet.header))] if sheet else []
    return render(request, "days_candidates.html", ctx | {
        "csrf": identity(request).csrf_token or "", "upload": upload, "columns": columns, "fields": FIELDS,
        "mapping": mapping or {}, "header": sheet.header if sheet else [],
        "sample": [{"row": n, "cells": cells} for n, cells in sheet.rows[:PREVIEW_ROWS]] if sheet else [],
        "rows_total": len(sheet.rows) if sheet else 0,
        "problems": _problems(lang, problems or []), "preview": preview, "error": error}, status=status)


@routes.get("/admin/days/{day_id}/candidates", allow_head=False)
@requires("days.manage")
async def list_page(request: web.Request) -> web.Response:
    day_id = _day_id(request)
    raw = request.query.get("upload", "")
    if not raw:
        return await _list_page(request)
    if not raw.isdigit() or len(raw) > 9:
        raise ApiError(400, "upload must be a number", "query upload")
    try:
        upload, sheet = await _read_upload(request, day_id, int(raw))
    except DayError as exc:
        return await _list_page(request, error=_say(lang_of(request), exc.field, exc.key, exc.params), status=404)
    except ListFileError as exc:
        return await _list_page(request, error=_say(lang_of(request), "file", exc.key, exc.params), status=422)
    return await _list_page(request, upload=upload, sheet=sheet, mapping=guess_mapping(sheet.header))


async def _read_upload(request: web.Request, day_id: int, upload_id: int) -> tuple[dict[str, Any], Sheet]:
    def q(s: Session) -> tuple[dict[str, Any], bytes]:
        row = upload_of(s, day_id, upload_id)
        return {"id": row.id, "name": row.file_name}, row.body

    info, body = await db_run(request, q)
    return info, await asyncio.to_thread(read_file, info["name"], body)


@routes.post("/admin/days/{day_id}/candidates")
@requires("days.manage")
async def list_upload(request: web.Request) -> web.Response:
    """The file (multipart field "file"): kept for the mapping step, then the mapping page."""
    day_id = _day_id(request)
    form = await request.post()  # read whole (and size-limited) by the body middleware; cached
    item = form.get("file")
    lang = lang_of(request)
    if not isinstance(item, web.FileField) or not item.filename:
        return await _list_page(request, error=_say(lang, "file", "file_required", {}), status=422)
    data = item.file.read()
    try:
        await asyncio.to_thread(read_file, item.filename, data)  # refused now if it is not a list at all
    except ListFileError as exc:
        return await _list_page(request, error=_say(lang, "file", exc.key, exc.params), status=422)
    who = identity(request)
    try:
        row_id = await db_run(request, lambda s: store_upload(s, day_id, item.filename, data, who.actor).id)
    except DayError as exc:
        if exc.key == "no_day":
            raise ApiError(404, f"no exam day {day_id}", "URL day_id") from None
        return await _list_page(request, error=_say(lang, exc.field, exc.key, exc.params), status=exc.status)
    return _see(request, f"/admin/days/{day_id}/candidates", upload=row_id)


@routes.post("/admin/days/{day_id}/candidates/map")
@requires("days.manage")
async def list_map(request: web.Request) -> web.Response:
    """The mapping chosen (map_<field> = column index or empty): check every row; import when asked and clean."""
    day_id = _day_id(request)
    form = await read_form(request)
    lang = lang_of(request)
    raw = form.get("upload", "")
    if not raw.isdigit() or len(raw) > 9:
        return await _list_page(request, error=_say(lang, "file", "no_upload", {}), status=422)
    try:
        upload, sheet = await _read_upload(request, day_id, int(raw))
    except DayError as exc:
        return await _list_page(request, error=_say(lang, exc.field, exc.key, exc.params), status=422)
    except ListFileError as exc:
        return await _list_page(request, error=_say(lang, "file", exc.key, exc.params), status=422)
    mapping: dict[str, int | None] = {}
    for name in FIELDS:
        value = form.get(f"map_{name}", "")
        mapping[name] = int(value) if value.isdigit() and len(value) < 4 else None
    plan = await db_run(request, lambda s: _list_context(s, day_id))
    sp = plan["specialty"] or {"code": "", "name": ""}
    listed, problems = await asyncio.to_thread(parse_rows, sheet, mapping, (sp["code"], sp["name"]))
    if problems:
        return await _list_page(request, upload=upload, sheet=sheet, mapping=mapping, problems=problems, status=422)
    if form.get("action") != "import":
        preview = [{"row": x.row, "number": x.number, "stream": x.stream, "time": x.time or "",
                    "named": bool(x.names and any(x.names.values()))} for x in listed]
        return await _list_page(request, upload=upload, sheet=sheet, mapping=mapping, preview=preview)
    who = identity(request)
    shown = {k: sheet.column_label(v) for k, v in mapping.items() if v is not None}
    try:
        n = await db_run(request, lambda s: import_candidates(s, day_id, upload["id"], listed, shown, who.actor))
    except DayError as exc:
        return await _list_page(request, upload=upload, sheet=sheet, mapping=mapping,
                                error=_say(lang, exc.field, exc.key, exc.params), status=exc.status)
    resp = _see(request, f"/admin/days/{day_id}", done="imported", n=n)
    resp.headers["Location"] += "#candidates"
    return resp
