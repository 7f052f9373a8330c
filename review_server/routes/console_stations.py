"""The centre console's Station tokens page (admin): the stations, a new station, and each station's bearer tokens
(issued here and shown this once: only the hash is kept; revoked here). Every change is audited.

- ``GET /admin/stations``; ``POST /admin/stations`` (new station);
- ``POST /admin/stations/{code}/tokens`` (issue); ``POST /admin/stations/{code}/tokens/{token_id}/revoke``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit, auth
from ..forms import Form, FormError
from ..models import Station, StationToken, Task
from ..roles import requires
from ..validate import path_ident, path_int
from ..web import db_run, identity, read_form, render
from .console import NO_STORE, done_redirect

routes = web.RouteTableDef()


def _data(s: Session) -> dict[str, Any]:
    tasks = s.scalars(select(Task).order_by(Task.code)).all()
    titles = {t.id: t.title for t in tasks}
    stations = []
    for st in s.scalars(select(Station).order_by(Station.code)):
        tokens = s.scalars(select(StationToken).where(StationToken.station_id == st.id).order_by(StationToken.id))
        stations.append({"code": st.code, "name": st.name, "room": st.room,
                         "task": titles.get(st.task_id) if st.task_id else None, "tokens": list(tokens)})
    return {"stations": stations, "tasks": tasks}


async def _page(request: web.Request, *, error: FormError | None = None, values: dict[str, str] | None = None,
                shown: dict[str, Any] | None = None, status: int = 200) -> web.Response:
    context = await db_run(request, _data) | {"error": error, "values": values or {}, "shown": shown,
                                              "done": request.query.get("done")}
    return render(request, "admin_stations.html", context, status=status, headers=NO_STORE)


@routes.get("/admin/stations", allow_head=False)
@requires("stations.manage")
async def stations_page(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post("/admin/stations")
@requires("stations.manage")
async def add_station(request: web.Request) -> web.Response:
    form, who = Form(await read_form(request)), identity(request)
    try:
        code, name = form.ident("code"), form.name("name", required=False) or ""
        room = form.name("room", required=False, max_len=32) or ""
        task = form.ident("task", required=False)

        def add(s: Session) -> None:
            if s.scalar(select(Station.id).where(Station.code == code)) is not None:
                raise FormError("code", "exists")
            task_row = s.scalar(select(Task).where(Task.code == task)) if task else None
            if task and task_row is None:
                raise FormError("task", "unknown")
            s.add(Station(code=code, name=name, room=room, task_id=task_row.id if task_row else None,
                          specialty_id=task_row.specialty_id if task_row else None))
            s.flush()
            audit.append(s, who.actor, audit.STATION_ADD, code)  # type: ignore[arg-type]

        await db_run(request, add)
    except FormError as exc:
        exc.form = "new"
        return await _page(request, error=exc, values=form.data, status=422)
    return done_redirect(request, "/admin/stations", "station_added")


def _station(s: Session, code: str) -> Station:
    st = s.scalar(select(Station).where(Station.code == code))
    if st is None:
        raise FormError("code", "unknown", "tokens")
    return st


@routes.post("/admin/stations/{code}/tokens")
@requires("stations.manage")
async def issue_token(request: web.Request) -> web.Response:
    code, who = path_ident(request, "code"), identity(request)

    def issue(s: Session) -> tuple[str, int]:
        token, row = auth.issue_station_token(s, _station(s, code))
        audit.append(s, who.actor, audit.STATION_TOKEN_ISSUE, code, {"token_id": row.id})
        return token, row.id

    try:
        token, token_id = await db_run(request, issue)
    except FormError as exc:
        return await _page(request, error=exc, status=422)
    return await _page(request, shown={"station": code, "token": token, "token_id": token_id})


@routes.post("/admin/stations/{code}/tokens/{token_id}/revoke")
@requires("stations.manage")
async def revoke_token(request: web.Request) -> web.Response:
    code, token_id, who = path_ident(request, "code"), path_int(request, "token_id"), identity(request)

    def revoke(s: Session) -> None:
        st = _station(s, code)
        row = s.get(StationToken, token_id)
        if row is None or row.station_id != st.id:
            raise FormError("token_id", "unknown", "tokens")
        if row.revoked_at is not None:
            raise FormError("token_id", "already", "tokens")
        auth.revoke_station_tokens(s, st, token_id)
        audit.append(s, who.actor, audit.STATION_TOKEN_REVOKE, code, {"token_id": token_id})

    try:
        await db_run(request, revoke)
    except FormError as exc:
        return await _page(request, error=exc, status=422)
    return done_redirect(request, "/admin/stations", "token_revoked")
