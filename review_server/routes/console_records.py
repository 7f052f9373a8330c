"""The console's pages about keeping records: retention periods (admin), legal holds (admin and archivist: appeals
and requests keep an attempt's recordings from deletion), and the audit log's state (admin: the hash chain checked
from its first row, its head, the signed anchors outside the database). The same rules as the JSON API
(retention.py, audit.py, audit_anchor.py); every change audited.

- ``GET /admin/retention``; ``POST /admin/retention/{code}`` (keep_days);
- ``GET /holds``; ``POST /holds`` (attempt_id, kind, reason); ``POST /holds/{hold_id}/release`` (reason);
- ``GET /admin/audit``; ``POST /admin/audit/anchor`` (write today's anchor now, as the daily timer does).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit, audit_anchor, retention
from ..forms import Form, FormError
from ..models import Attempt, AuditEvent, Candidate, ExamDay, LegalHold, RetentionPolicy, Specialty, Station
from ..roles import requires
from ..signing import data_dir, load_existing, load_or_create
from ..validate import path_ident, path_int
from ..web import CONFIG, db_run, identity, read_form, render
from .console import NO_STORE, done_redirect

routes = web.RouteTableDef()
RECENT_EVENTS = 30
ANCHOR_WRITTEN = "audit.anchor"


# --- retention ----------------------------------------------------------------------------------


def _policies(s: Session) -> dict[str, Any]:
    kept = {p.specialty_id: p for p in s.scalars(select(RetentionPolicy))}
    rows = [{"code": sp.code, "name": sp.name, "policy": kept.get(sp.id)}
            for sp in s.scalars(select(Specialty).order_by(Specialty.code))]
    return {"specialties": rows}


async def _retention_page(request: web.Request, *, error: FormError | None = None,
                          values: dict[str, str] | None = None, status: int = 200) -> web.Response:
    context = await db_run(request, _policies) | {"error": error, "values": values or {},
                                                  "done": request.query.get("done")}
    return render(request, "admin_retention.html", context, status=status, headers=NO_STORE)


@routes.get("/admin/retention", allow_head=False)
@requires("retention.manage")
async def retention_page(request: web.Request) -> web.Response:
    return await _retention_page(request)


@routes.post("/admin/retention/{code}")
@requires("retention.manage")
async def set_policy(request: web.Request) -> web.Response:
    code, form, who = path_ident(request, "code"), Form(await read_form(request)), identity(request)
    try:
        days = form.integer("keep_days", lo=1, hi=100 * 366)

        def put(s: Session) -> None:
            sp = s.scalar(select(Specialty).where(Specialty.code == code))
            if sp is None:
                raise FormError("specialty", "unknown")
            retention.set_policy(s, sp, days, who.actor)  # type: ignore[arg-type]

        await db_run(request, put)
    except FormError as exc:
        exc.form = f"policy:{code}"
        return await _retention_page(request, error=exc, values=form.data, status=422)
    return done_redirect(request, "/admin/retention", "policy_set")


# --- legal holds --------------------------------------------------------------------------------


def _holds(s: Session) -> dict[str, Any]:
    def rows(released: bool, limit: int) -> list[dict[str, Any]]:
        cond = LegalHold.released_at.is_not(None) if released else LegalHold.released_at.is_(None)
        q = (select(LegalHold, Attempt, Station.code, Candidate.accreditation_number, ExamDay.day)
             .join(Attempt, Attempt.id == LegalHold.attempt_id)
             .join(Station, Station.id == Attempt.station_id)
             .outerjoin(Candidate, Candidate.id == Attempt.candidate_id)
             .outerjoin(ExamDay, ExamDay.id == Attempt.exam_day_id)
             .where(cond).order_by(LegalHold.id.desc()).limit(limit))
        return [{"hold": h, "station": code, "number": number, "day": day} for h, _a, code, number, day in s.execute(q)]

    return {"active": rows(False, 500), "released": rows(True, 20), "kinds": retention.HOLD_KINDS}


async def _holds_page(request: web.Request, *, error: FormError | None = None, values: dict[str, str] | None = None,
                      status: int = 200) -> web.Response:
    context = await db_run(request, _holds) | {"error": error, "values": values or {},
                                               "done": request.query.get("done")}
    return render(request, "holds.html", context, status=status, headers=NO_STORE)


@routes.get("/holds", allow_head=False)
@requires("holds.manage")
async def holds_page(request: web.Request) -> web.Response:
    return await _holds_page(request)


@routes.post("/holds")
@requires("holds.manage")
async def add_hold(request: web.Request) -> web.Response:
    form, who = Form(await read_form(request)), identity(request)
    try:
        attempt_id = form.ident("attempt_id")
        kind = form.choice("kind", retention.HOLD_KINDS)
        reason = form.text("reason", max_len=2000)

        def add(s: Session) -> None:
            if s.get(Attempt, attempt_id) is None:
                raise FormError("attempt_id", "unknown")
            retention.add_hold(s, attempt_id, kind, reason, who.actor)  # type: ignore[arg-type]

        await db_run(request, add)
    except FormError as exc:
        exc.form = "new"
        return await _holds_page(request, error=exc, values=form.data, status=422)
    return done_redirect(request, "/holds", "held")


@routes.post("/holds/{hold_id}/release")
@requires("holds.manage")
async def release_hold(request: web.Request) -> web.Response:
    hold_id, form, who = path_int(request, "hold_id"), Form(await read_form(request)), identity(request)
    try:
        reason = form.text("reason", max_len=2000)

        def release(s: Session) -> None:
            hold = s.get(LegalHold, hold_id)
            if hold is None:
                raise FormError("hold", "unknown")
            if hold.released_at is not None:
                raise FormError("hold", "already")
            retention.release_hold(s, hold_id, reason, who.actor)  # type: ignore[arg-type]

        await db_run(request, release)
    except FormError as exc:
        exc.form = f"hold:{hold_id}"
        return await _holds_page(request, error=exc, values=form.data, status=422)
    return done_redirect(request, "/holds", "released")


# --- audit --------------------------------------------------------------------------------------


def _anchors(folder: Any) -> list[dict[str, Any]]:
    out = []
    for path in sorted(folder.glob("*.json"), reverse=True)[:30] if folder.is_dir() else []:
        try:
            body = json.loads(path.read_bytes()[:audit_anchor.MAX_ANCHOR_BYTES])
            out.append({"day": body.get("day"), "seq": body.get("seq"), "hash": body.get("hash")})
        except (OSError, ValueError):
            out.append({"day": path.stem, "seq": None, "hash": None})
    return out


@routes.get("/admin/audit", allow_head=False)
@requires("audit.verify")
async def audit_page(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    folder = audit_anchor.folder_of(cfg)
    key = await asyncio.to_thread(load_existing, data_dir(cfg))

    def q(s: Session) -> dict[str, Any]:
        chain = audit.verify(s)
        checked, problems = audit_anchor.check(s, key, folder)
        recent = s.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(RECENT_EVENTS)).all()
        return {"chain": chain, "anchors_checked": checked, "problems": problems, "recent": recent}

    context = await db_run(request, q) | {"anchors": await asyncio.to_thread(_anchors, folder),
                                          "done": request.query.get("done")}
    return render(request, "admin_audit.html", context, headers=NO_STORE)


@routes.post("/admin/audit/anchor")
@requires("audit.verify")
async def write_anchor(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    key = await asyncio.to_thread(load_or_create, data_dir(cfg))
    who = identity(request)

    def publish(s: Session) -> Any:
        written = audit_anchor.publish(s, key, audit_anchor.folder_of(cfg))
        if written is not None:  # after the anchor: the anchored head is the row before this one
            audit.append(s, who.actor, ANCHOR_WRITTEN, written.name)
        return written

    written = await db_run(request, publish)
    return done_redirect(request, "/admin/audit", "anchored" if written else "anchor_exists")
