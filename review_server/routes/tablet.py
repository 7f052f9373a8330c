"""Examiners' tablet credentials (review_server/tablet_credentials.py) and the station's roster.

- ``POST /api/stations/{code}/tablet-credentials`` {"day": "YYYY-MM-DD", "login"?} (stations.manage): a credential
  for the examiner (or, without "login", for every examiner assigned to the station that day); the answer carries
  each PIN, once: {"credentials": [{"login", "pin", "key_id", "day", "valid_from", "valid_until", "state"}]}.
- ``GET /api/stations/{code}/tablet-credentials`` (stations.manage): the station's credentials, without PINs.
- ``DELETE /api/tablet-credentials/{key_id}`` (stations.manage): revoke; every mark it signed is refused after.
- ``GET /api/stations/{code}/roster`` (station.schedule, the token's own station): the roster the station keeps
  for offline sign-in: {"station", "examiners": [roster entries, checklists/examiner_keys.py]}.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import auth
from ..models import Station
from ..roles import requires
from ..tablet_credentials import CredentialError, describe, issue, issue_for_assigned, listed, revoke, roster
from ..validate import Fields, path_ident
from ..web import CONFIG, ApiError, db_run, identity, read_json
from .scope import own_station

routes = web.RouteTableDef()
KEY_ID_RE = re.compile(r"[0-9a-f]{32}")


def _station(s: Session, code: str) -> Station:
    station = s.scalar(select(Station).where(Station.code == code))
    if station is None:
        raise ApiError(404, f"no station {code!r}", "URL code")
    return station


def _refusal(exc: CredentialError) -> ApiError:
    return ApiError(exc.status, str(exc), exc.where)


@routes.post("/api/stations/{code}/tablet-credentials")
@requires("stations.manage")
async def issue_credentials(request: web.Request) -> web.Response:
    code = path_ident(request, "code")
    f = Fields(await read_json(request), allowed={"day", "login"})
    day = f.date("day")
    login = f.ident("login", auth.LOGIN_RE, required=False)
    who, cfg = identity(request), request.app[CONFIG]

    def make(s: Session) -> list[dict[str, Any]]:
        _station(s, code)
        try:
            made = [(login, *issue(s, cfg, code, day, login, who.actor))] if login else \
                issue_for_assigned(s, cfg, code, day, who.actor)
        except CredentialError as exc:
            raise _refusal(exc) from None
        return [describe(s, row) | {"pin": pin} for _, pin, row in made]

    return web.json_response({"credentials": await db_run(request, make)}, status=201,
                             headers={"Cache-Control": "no-store"})


@routes.get("/api/stations/{code}/tablet-credentials", allow_head=False)
@requires("stations.manage")
async def list_credentials(request: web.Request) -> web.Response:
    code = path_ident(request, "code")
    return web.json_response({"credentials": await db_run(request, lambda s: listed(s, _station(s, code).id))})


@routes.delete("/api/tablet-credentials/{key_id}")
@requires("stations.manage")
async def revoke_credential(request: web.Request) -> web.Response:
    key_id = path_ident(request, "key_id", KEY_ID_RE)
    who = identity(request)

    def drop(s: Session) -> dict[str, Any]:
        try:
            return describe(s, revoke(s, key_id, who.actor))
        except CredentialError as exc:
            raise _refusal(exc) from None

    return web.json_response(await db_run(request, drop))


@routes.get("/api/stations/{code}/roster", allow_head=False)
@requires("station.schedule")
async def station_roster(request: web.Request) -> web.Response:
    code = own_station(request, "reads only its own roster")
    station_id = identity(request).station_id
    examiners = await db_run(request, lambda s: roster(s, station_id))  # type: ignore[arg-type]
    return web.json_response({"station": code, "examiners": examiners}, headers={"Cache-Control": "no-store"})
