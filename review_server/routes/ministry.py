"""The archivist's requests page (ministry.py): every request for materials with its state and its package's
progress, the form to register a new one, and on each row the next step: build the package, download it, record
it as sent. The rows follow the export jobs by themselves (static/pages/refresh.js fetches `GET /requests/rows`).

- ``GET /requests``, ``GET /requests/rows`` (the table's rows alone);
- ``POST /requests`` (register); ``POST /requests/{request_id}/build``; ``POST /requests/{request_id}/sent``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from .. import ministry
from ..export import ExportError, start_export, start_job
from ..forms import Form, FormError
from ..roles import requires
from ..validate import ACCRED_RE, path_int
from ..web import CONFIG, DB, STORAGE, db_run, identity, read_form, render
from .console import NO_STORE, centre_today, done_redirect

routes = web.RouteTableDef()


def _data(request: web.Request) -> Any:
    config = request.app[CONFIG]

    def q(s: Session) -> dict[str, Any]:
        return {"rows": ministry.rows(s, config), "stages": ministry.stages(s)}

    return q


async def _page(request: web.Request, *, error: FormError | None = None, values: dict[str, str] | None = None,
                status: int = 200) -> web.Response:
    context = await db_run(request, _data(request)) | {
        "error": error, "values": values or {}, "done": request.query.get("done"),
        "today": centre_today(request).isoformat(), "ministry": ministry.MINISTRY}
    return render(request, "requests.html", context, status=status, headers=NO_STORE)


@routes.get("/requests", allow_head=False)
@requires("archive.export")
async def requests_page(request: web.Request) -> web.Response:
    return await _page(request)


@routes.get("/requests/rows", allow_head=False)
@requires("archive.export")
async def requests_rows(request: web.Request) -> web.Response:
    context = await db_run(request, _data(request)) | {"error": None, "values": {}}
    return render(request, "_request_rows.html", context, headers=NO_STORE)


@routes.post("/requests")
@requires("archive.export")
async def register(request: web.Request) -> web.Response:
    form, who = Form(await read_form(request)), identity(request)
    try:
        number, date = form.name("number", max_len=64), form.date("date")
        requester = form.name("requester", max_len=300)
        asked_number = form.ident("asked_number", ACCRED_RE, required=False)
        asked_day = form.date("asked_day", required=False)
        asked_stage = form.text("asked_stage", max_len=80)
        subject = form.text("subject", required=False, max_len=5000) or ""
        # Required fields: the form refuses them absent.
        assert number is not None and date is not None and requester is not None and asked_stage is not None

        def add(s: Session) -> None:
            try:
                ministry.register(s, number=number, date=date, requester=requester, asked_number=asked_number,
                                  asked_day=asked_day, asked_stage=asked_stage, subject=subject, actor=who.actor)
            except ministry.RequestError as exc:
                raise FormError(exc.field, exc.key) from None

        await db_run(request, add)
    except FormError as exc:
        exc.form = "new"
        return await _page(request, error=exc, values=form.data, status=422)
    return done_redirect(request, "/requests", "registered")


@routes.post("/requests/{request_id}/build")
@requires("archive.export")
async def build(request: web.Request) -> web.Response:
    """Select (and hold) what the request asks for, then write its package in the background."""
    request_id, who, app = path_int(request, "request_id"), identity(request), request.app

    def select(s: Session) -> None:
        row = next((r for r in ministry.rows(s, app[CONFIG]) if r.request.id == request_id), None)
        if row is not None and row.state == "building":
            raise FormError("request", "already", f"request:{request_id}")
        try:
            ministry.select_matching(s, request_id, who.actor)
        except ministry.RequestError as exc:
            raise FormError(exc.field, exc.key, f"request:{request_id}") from None

    try:
        await db_run(request, select)
        try:
            package_id, g = await asyncio.to_thread(start_export, app[DB], app[CONFIG], request_id, who.actor)
            start_job(app[DB], app[STORAGE], app[CONFIG], package_id, g, who.actor)
        except ExportError:
            raise FormError("request", "not_ready", f"request:{request_id}") from None
    except FormError as exc:
        return await _page(request, error=exc, status=422)
    return done_redirect(request, "/requests", "building")


@routes.post("/requests/{request_id}/sent")
@requires("archive.export")
async def sent(request: web.Request) -> web.Response:
    request_id, who = path_int(request, "request_id"), identity(request)
    form = Form(await read_form(request))
    try:
        note = form.text("note", max_len=500)

        def mark(s: Session) -> None:
            try:
                ministry.mark_sent(s, request_id, note, who.actor, request.app[CONFIG])  # type: ignore[arg-type]
            except ministry.RequestError as exc:
                raise FormError(exc.field, exc.key) from None

        await db_run(request, mark)
    except FormError as exc:
        exc.form = f"request:{request_id}"
        return await _page(request, error=exc, values=form.data, status=422)
    return done_redirect(request, "/requests", "sent")
