"""The centre console's Users page (admin): accounts (create, disable or enable, role, password reset), examiners'
assignments to stations and days, and examiners' tablet credentials (issued by the server: the PIN shown once on
the page, or printed once as a PDF slip per examiner, station and day). Every form posts here with the session's
CSRF token; a refusal shows the page again with the field named and what was typed; every change is audited
(accounts.py, tablet_credentials.py).

- ``GET /admin/users``; ``POST /admin/users`` (new account);
- ``POST /admin/users/{login}/active`` | ``/role`` | ``/password`` | ``/assignments``;
- ``POST /admin/assignments/{assignment_id}/delete``;
- ``POST /admin/tablet-credentials`` (issue: page or PDF); ``POST /admin/tablet-credentials/{key_id}/revoke``.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import accounts, auth, tablet_credentials, tablet_slips
from ..forms import Form, FormError
from ..models import ExamDay, ExaminerAssignment, Station, TabletCredential, User
from ..roles import Role, requires
from ..validate import path_ident, path_int
from ..web import CONFIG, db_run, identity, local_time, read_form, render
from .console import NO_STORE, centre_today, done_redirect

routes = web.RouteTableDef()
ROLES = tuple(r.value for r in Role)
KEY_ID_RE = re.compile(r"[0-9a-f]{32}")
ANY_DAY = "any"


def _data(s: Session) -> dict[str, Any]:
    users = s.scalars(select(User).order_by(User.login)).all()
    stations = s.scalars(select(Station).order_by(Station.code)).all()
    days = s.scalars(select(ExamDay).order_by(ExamDay.day.desc(), ExamDay.id.desc()).limit(60)).all()
    by_station = {st.id: st for st in stations}
    by_day = {d.id: d for d in days}
    assignments: dict[int, list[dict[str, Any]]] = {}
    rows = s.scalars(select(ExaminerAssignment).order_by(ExaminerAssignment.id))
    for a in rows:
        st, day = by_station.get(a.station_id), by_day.get(a.exam_day_id) if a.exam_day_id else None
        if a.exam_day_id is not None and day is None:
            day = s.get(ExamDay, a.exam_day_id)
        assignments.setdefault(a.user_id, []).append(
            {"id": a.id, "station": st.code if st else "?", "day": day.day if day else None})
    creds = s.execute(select(TabletCredential, User, Station, ExamDay)
                      .join(User, User.id == TabletCredential.user_id)
                      .join(Station, Station.id == TabletCredential.station_id)
                      .join(ExamDay, ExamDay.id == TabletCredential.exam_day_id)
                      .where(TabletCredential.replaced_at.is_(None))
                      .order_by(ExamDay.day.desc(), Station.code, User.login).limit(100)).all()
    return {"users": users, "stations": stations, "days": days, "assignments": assignments,
            "credentials": [{"key_id": c.key_id, "login": u.login, "station": st.code, "day": d.day,
                             "revoked": c.revoked_at is not None} for c, u, st, d in creds]}


async def _page(request: web.Request, *, error: FormError | None = None, values: dict[str, str] | None = None,
                shown: dict[str, Any] | None = None, status: int = 200) -> web.Response:
    data = await db_run(request, _data)
    context = data | {"error": error, "values": values or {}, "shown": shown, "roles": ROLES,
                      "done": request.query.get("done"), "today": centre_today(request).isoformat(),
                      "me": identity(request).login}
    return render(request, "admin_users.html", context, status=status, headers=NO_STORE)


def _refused(exc: accounts.AccountError, form: str) -> FormError:
    return FormError(exc.field, exc.key, form)


@routes.get("/admin/users", allow_head=False)
@requires("users.manage")
async def users_page(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post("/admin/users")
@requires("users.manage")
async def add_user(request: web.Request) -> web.Response:
    form, who = Form(await read_form(request)), identity(request)
    try:
        login = form.ident("login", auth.LOGIN_RE)
        display_name = form.name("display_name", required=False) or ""
        role = form.choice("role", ROLES)
        password = form.text("password", required=False, max_len=1024)
        if password is not None and len(password) < auth.MIN_PASSWORD:
            raise FormError("password", "password", n=auth.MIN_PASSWORD)
        given = password or accounts.new_password()

        def add(s: Session) -> None:
            try:
                accounts.add(s, login, given, role, display_name, who.actor)  # type: ignore[arg-type]
            except accounts.AccountError as exc:
                raise _refused(exc, "new") from None

        await db_run(request, add)
    except FormError as exc:
        exc.form = "new"
        return await _page(request, error=exc, values=form.data, status=422)
    if password is None:  # drawn by the server: shown this once
        return await _page(request, shown={"kind": "password", "login": login, "secret": given})
    return done_redirect(request, "/admin/users", "user_added")


@routes.post("/admin/users/{login}/active")
@requires("users.manage")
async def set_active(request: web.Request) -> web.Response:
    login = path_ident(request, "login", auth.LOGIN_RE)
    form, who = Form(await read_form(request)), identity(request)
    try:
        active = form.choice("active", ("0", "1")) == "1"

        def change(s: Session) -> None:
            try:
                accounts.set_active(s, login, active, who.actor, who.user_id)
            except accounts.AccountError as exc:
                raise _refused(exc, f"user:{login}") from None

        await db_run(request, change)
    except FormError as exc:
        exc.form = f"user:{login}"
        return await _page(request, error=exc, values=form.data, status=422)
    return done_redirect(request, "/admin/users", "enabled" if active else "disabled")


@routes.post("/admin/users/{login}/role")
@requires("users.manage")
async def set_role(request: web.Request) -> web.Response:
    login = path_ident(request, "login", auth.LOGIN_RE)
    form, who = Form(await read_form(request)), identity(request)
    try:
        role = form.choice("role", ROLES)

        def change(s: Session) -> None:
            try:
                accounts.set_role(s, login, role, who.actor, who.user_id)  # type: ignore[arg-type]
            except accounts.AccountError as exc:
                raise _refused(exc, f"user:{login}") from None

        await db_run(request, change)
    except FormError as exc:
        exc.form = f"user:{login}"
        return await _page(request, error=exc, values=form.data, status=422)
    return done_redirect(request, "/admin/users", "role_set")


@routes.post("/admin/users/{login}/password")
@requires("users.manage")
async def reset_password(request: web.Request) -> web.Response:
    login = path_ident(request, "login", auth.LOGIN_RE)
    who = identity(request)

    def reset(s: Session) -> str:
        try:
            return accounts.reset_password(s, login, who.actor)
        except accounts.AccountError as exc:
            raise _refused(exc, f"user:{login}") from None

    try:
        password = await db_run(request, reset)
    except FormError as exc:
        return await _page(request, error=exc, status=422)
    return await _page(request, shown={"kind": "password", "login": login, "secret": password})


def _day_id(form: Form) -> int | None:
    value = form.raw("exam_day_id")
    return None if value in ("", ANY_DAY) else form.integer("exam_day_id", lo=1)


@routes.post("/admin/users/{login}/assignments")
@requires("users.manage")
async def add_assignment(request: web.Request) -> web.Response:
    login = path_ident(request, "login", auth.LOGIN_RE)
    form, who = Form(await read_form(request)), identity(request)
    try:
        station, day_id = form.ident("station"), _day_id(form)

        def add(s: Session) -> None:
            try:
                accounts.assign(s, login, station, day_id, who.actor)  # type: ignore[arg-type]
            except accounts.AccountError as exc:
                raise _refused(exc, f"assign:{login}") from None

        await db_run(request, add)
    except FormError as exc:
        exc.form = f"assign:{login}"
        return await _page(request, error=exc, values=form.data, status=422)
    return done_redirect(request, "/admin/users", "assigned")


@routes.post("/admin/assignments/{assignment_id}/delete")
@requires("users.manage")
async def remove_assignment(request: web.Request) -> web.Response:
    assignment_id = path_int(request, "assignment_id")
    who = identity(request)

    def remove(s: Session) -> None:
        try:
            accounts.unassign(s, assignment_id, who.actor)
        except accounts.AccountError as exc:
            raise _refused(exc, "assignments") from None

    try:
        await db_run(request, remove)
    except FormError as exc:
        return await _page(request, error=exc, status=422)
    return done_redirect(request, "/admin/users", "unassigned")


# --- tablet credentials -------------------------------------------------------------------------


@routes.post("/admin/tablet-credentials")
@requires("stations.manage")
async def issue_credentials(request: web.Request) -> web.StreamResponse:
    """Form {login ("*" for every examiner assigned), station, day, output: page|pdf}: the PINs are shown once on
    the page, or given once as the PDF of the slips; nothing keeps them."""
    form, who, cfg = Form(await read_form(request)), identity(request), request.app[CONFIG]
    try:
        login = form.raw("login")
        if login != "*":
            login = form.ident("login", auth.LOGIN_RE)  # type: ignore[assignment]
        station, day = form.ident("station"), form.date("day")
        output = form.choice("output", ("page", "pdf"))
        assert station is not None and day is not None  # required: the form refuses them absent

        def issue(s: Session) -> list[tablet_slips.Slip]:
            if not accounts.days_on(s, day):
                raise FormError("day", "no_day")
            try:
                made = [(login, *tablet_credentials.issue(s, cfg, station, day, login, who.actor))] \
                    if login != "*" else tablet_credentials.issue_for_assigned(s, cfg, station, day, who.actor)
            except tablet_credentials.CredentialError as exc:
                raise FormError(exc.where, "not_assigned" if exc.where == "login" else "unknown") from None
            if not made:
                raise FormError("station", "nobody_assigned")
            st = s.scalar(select(Station).where(Station.code == station))
            slips = []
            for name, pin, row in made:
                user = s.get(User, row.user_id)
                valid = (f"{local_time(row.valid_from, cfg.timezone)[:-3]} – "
                         f"{local_time(row.valid_until, cfg.timezone)[:-3]}")
                slips.append(tablet_slips.Slip(name, user.display_name if user else "", station,
                                               st.name if st else "", day.strftime("%d.%m.%Y"),
                                               valid, pin, row.key_id))
            return slips

        slips = await db_run(request, issue)
    except FormError as exc:
        exc.form = "tablet"
        return await _page(request, error=exc, values=form.data, status=422)
    if output == "pdf":
        body = tablet_slips.to_pdf(slips)
        name = f"tablet-pins-{station}-{day.isoformat()}.pdf"
        return web.Response(body=body, content_type="application/pdf", headers={
            **NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'})
    return await _page(request, shown={"kind": "pins", "slips": slips})


@routes.post("/admin/tablet-credentials/{key_id}/revoke")
@requires("stations.manage")
async def revoke_credential(request: web.Request) -> web.Response:
    key_id = path_ident(request, "key_id", KEY_ID_RE)
    who = identity(request)

    def revoke(s: Session) -> None:
        try:
            tablet_credentials.revoke(s, key_id, who.actor)
        except tablet_credentials.CredentialError:
            raise FormError("key_id", "unknown", "credentials") from None

    try:
        await db_run(request, revoke)
    except FormError as exc:
        return await _page(request, error=exc, status=422)
    return done_redirect(request, "/admin/users", "revoked")
