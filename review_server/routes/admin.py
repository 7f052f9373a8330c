"""Administration: users, stations and their tokens, and the audit-chain check (the schedule and the
candidates are in schedule.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import accounts, audit, auth
from ..models import Specialty, Station, StationToken, Task, User
from ..roles import Role, requires
from ..validate import Fields, path_ident, path_int
from ..web import ApiError, db_run, identity, read_json
from .schedule import by_code

routes = web.RouteTableDef()


def _user_json(u: User) -> dict:
    return {"login": u.login, "role": u.role, "display_name": u.display_name, "active": u.active}


# --- users --------------------------------------------------------------------------------------


@routes.get("/api/users", allow_head=False)
@requires("users.manage")
async def list_users(request: web.Request) -> web.Response:
    users = await db_run(request, lambda s: [_user_json(u) for u in s.scalars(select(User).order_by(User.login))])
    return web.json_response({"users": users})


@routes.post("/api/users")
@requires("users.manage")
async def add_user(request: web.Request) -> web.Response:
    f = Fields(await read_json(request), allowed={"login", "password", "role", "display_name"})
    login = f.ident("login", auth.LOGIN_RE)
    password = f._get("password", True)
    try:
        auth.validate_password(password)
    except ValueError as exc:
        raise ApiError(422, str(exc), "password") from None
    role = f.choice("role", tuple(r.value for r in Role))
    display_name = f.name("display_name", required=False, default="")
    who = identity(request)

    def add(s: Session) -> dict:
        try:
            return _user_json(accounts.add(s, login, password, role, display_name, who.actor))
        except accounts.AccountError as exc:
            raise ApiError(exc.status, str(exc), exc.field) from None

    return web.json_response(await db_run(request, add), status=201)


@routes.delete("/api/users/{login}")
@requires("users.manage")
async def disable_user(request: web.Request) -> web.Response:
    login = path_ident(request, "login", auth.LOGIN_RE)
    who = identity(request)

    def disable(s: Session) -> dict:
        try:
            return _user_json(accounts.set_active(s, login, False, who.actor, who.user_id))
        except accounts.AccountError as exc:
            raise ApiError(exc.status, str(exc), "URL login") from None

    return web.json_response(await db_run(request, disable))


# --- stations and tokens ------------------------------------------------------------------------


def _station_json(st: Station, tokens: list[StationToken] | None = None) -> dict:
    out: dict[str, Any] = {"code": st.code, "name": st.name, "room": st.room}
    if tokens is not None:
        out["tokens"] = [
            {"id": t.id, "created_at": t.created_at.isoformat(), "revoked": t.revoked_at is not None} for t in tokens
        ]
    return out


@routes.get("/api/stations", allow_head=False)
@requires("stations.manage")
async def list_stations(request: web.Request) -> web.Response:
    def q(s: Session) -> list[dict]:
        return [_station_json(st, list(st.tokens)) for st in s.scalars(select(Station).order_by(Station.code))]

    return web.json_response({"stations": await db_run(request, q)})


@routes.post("/api/stations")
@requires("stations.manage")
async def add_station(request: web.Request) -> web.Response:
    f = Fields(await read_json(request), allowed={"code", "name", "room", "specialty", "task"})
    code, name = f.ident("code"), f.name("name", required=False, default="")
    room = f.name("room", required=False, max_len=32, default="")
    specialty, task = f.ident("specialty", required=False), f.ident("task", required=False)
    who = identity(request)

    def add(s: Session) -> dict:
        if s.scalar(select(Station.id).where(Station.code == code)) is not None:
            raise ApiError(409, f"station {code!r} already exists", "code")
        sp = by_code(s, Specialty, specialty, "specialty")
        tk = by_code(s, Task, task, "task")
        st = Station(code=code, name=name, room=room, specialty_id=sp.id if sp else None, task_id=tk.id if tk else None)
        s.add(st)
        s.flush()
        audit.append(s, who.actor, audit.STATION_ADD, code)
        return _station_json(st)

    return web.json_response(await db_run(request, add), status=201)


def _station(s: Session, code: str) -> Station:
    st = s.scalar(select(Station).where(Station.code == code))
    if st is None:
        raise ApiError(404, f"no station {code!r}", "URL code")
    return st


@routes.post("/api/stations/{code}/tokens")
@requires("stations.manage")
async def issue_token(request: web.Request) -> web.Response:
    code = path_ident(request, "code")
    who = identity(request)

    def issue(s: Session) -> dict:
        st = _station(s, code)
        token, row = auth.issue_station_token(s, st)
        audit.append(s, who.actor, audit.STATION_TOKEN_ISSUE, code, {"token_id": row.id})
        return {"station": code, "token_id": row.id, "token": token}

    # The token is shown this once; only its hash is kept.
    return web.json_response(await db_run(request, issue), status=201)


@routes.delete("/api/stations/{code}/tokens/{token_id}")
@requires("stations.manage")
async def revoke_token(request: web.Request) -> web.Response:
    code, token_id = path_ident(request, "code"), path_int(request, "token_id")
    who = identity(request)

    def revoke(s: Session) -> dict:
        st = _station(s, code)
        token = s.get(StationToken, token_id)
        if token is None or token.station_id != st.id:
            raise ApiError(404, f"station {code!r} has no token {token_id}", "URL token_id")
        n = auth.revoke_station_tokens(s, st, token_id)
        audit.append(s, who.actor, audit.STATION_TOKEN_REVOKE, code, {"token_id": token_id})
        return {"station": code, "token_id": token_id, "revoked": n}

    return web.json_response(await db_run(request, revoke))


# --- audit --------------------------------------------------------------------------------------


@routes.get("/api/audit/verify", allow_head=False)
@requires("audit.verify")
async def audit_verify(request: web.Request) -> web.Response:
    result = await db_run(request, audit.verify)
    return web.json_response(result.as_dict())
