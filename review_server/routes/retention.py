"""Retention periods per specialty and legal holds on attempts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from ..models import Attempt, LegalHold, RetentionPolicy, Specialty
from ..retention import HOLD_KINDS, HOLD_RELEASE, POLICY_SET, add_hold
from ..roles import requires
from ..validate import Fields, path_ident, path_int
from ..web import ApiError, db_run, identity, read_json

routes = web.RouteTableDef()


def _hold_json(h: LegalHold) -> dict[str, Any]:
    return {
        "id": h.id,
        "attempt_id": h.attempt_id,
        "kind": h.kind,
        "reason": h.reason,
        "created_by": h.created_by,
        "created_at": h.created_at.isoformat(),
        "released_at": h.released_at.isoformat() if h.released_at else None,
        "released_by": h.released_by,
    }


@routes.get("/api/retention-policies", allow_head=False)
@requires("retention.manage")
async def list_policies(request: web.Request) -> web.Response:
    def q(s: Session) -> list[dict[str, Any]]:
        rows = s.execute(
            select(Specialty.code, RetentionPolicy.keep_days, RetentionPolicy.updated_by)
            .join(RetentionPolicy, RetentionPolicy.specialty_id == Specialty.id)
            .order_by(Specialty.code)
        )
        return [{"specialty": c, "keep_days": d, "updated_by": u} for c, d, u in rows]

    return web.json_response({"policies": await db_run(request, q)})


@routes.put("/api/retention-policies/{code}")
@requires("retention.manage")
async def set_policy(request: web.Request) -> web.Response:
    """Body {"keep_days": N}: recordings of the specialty are kept N days after the exam day."""
    code = path_ident(request, "code")
    days = Fields(await read_json(request), allowed={"keep_days"}).integer("keep_days", lo=1, hi=100 * 366)
    who = identity(request)

    def put(s: Session) -> dict[str, Any]:
        sp = s.scalar(select(Specialty).where(Specialty.code == code))
        if sp is None:
            raise ApiError(404, f"no specialty {code!r}", "URL code")
        row = s.scalar(select(RetentionPolicy).where(RetentionPolicy.specialty_id == sp.id))
        old = row.keep_days if row else None
        if row is None:
            row = RetentionPolicy(specialty_id=sp.id, keep_days=days, updated_by=who.actor)
            s.add(row)
        row.keep_days, row.updated_by, row.updated_at = days, who.actor, dt.datetime.now(dt.UTC)
        audit.append(s, who.actor, POLICY_SET, code, {"keep_days": days, "was": old})
        return {"specialty": code, "keep_days": days}

    return web.json_response(await db_run(request, put))


@routes.get("/api/attempts/{attempt_id}/holds", allow_head=False)
@requires("holds.manage")
async def list_holds(request: web.Request) -> web.Response:
    attempt_id = path_ident(request, "attempt_id")

    def q(s: Session) -> list[dict[str, Any]]:
        if s.get(Attempt, attempt_id) is None:
            raise ApiError(404, f"no attempt {attempt_id!r}", "URL attempt_id")
        return [_hold_json(h) for h in s.scalars(select(LegalHold).where(LegalHold.attempt_id == attempt_id))]

    return web.json_response({"holds": await db_run(request, q)})


@routes.post("/api/attempts/{attempt_id}/holds")
@requires("holds.manage")
async def hold(request: web.Request) -> web.Response:
    """Body {"kind": appeal|request|other, "reason": "..."}: retention keeps the attempt until released."""
    attempt_id = path_ident(request, "attempt_id")
    f = Fields(await read_json(request), allowed={"kind", "reason"})
    kind, reason = f.choice("kind", HOLD_KINDS), f.text("reason", max_len=2000)
    if not reason.strip():
        raise ApiError(422, "required", "reason")
    who = identity(request)

    def add(s: Session) -> dict[str, Any]:
        if s.get(Attempt, attempt_id) is None:
            raise ApiError(404, f"no attempt {attempt_id!r}", "URL attempt_id")
        return _hold_json(add_hold(s, attempt_id, kind, reason, who.actor))

    return web.json_response(await db_run(request, add), status=201)


@routes.delete("/api/holds/{hold_id}")
@requires("holds.manage")
async def release(request: web.Request) -> web.Response:
    """Body {"reason": "..."}: the hold ends (the appeal is decided, the request answered)."""
    hold_id = path_int(request, "hold_id")
    reason = Fields(await read_json(request), allowed={"reason"}).text("reason", max_len=2000)
    if not reason.strip():
        raise ApiError(422, "required", "reason")
    who = identity(request)

    def rel(s: Session) -> dict[str, Any]:
        h = s.get(LegalHold, hold_id)
        if h is None:
            raise ApiError(404, f"no hold {hold_id}", "URL hold_id")
        if h.released_at is not None:
            raise ApiError(409, "already released", "URL hold_id")
        h.released_at, h.released_by = dt.datetime.now(dt.UTC), who.actor
        audit.append(s, who.actor, HOLD_RELEASE, h.attempt_id, {"hold_id": h.id, "reason": reason})
        return _hold_json(h)

    return web.json_response(await db_run(request, rel))
