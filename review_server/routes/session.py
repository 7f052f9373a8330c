"""Health, login/logout (templates/login.html), the home page (templates/home.html) and /api/me."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import weakref
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit, auth
from ..client_address import client_address
from ..i18n import lang_of
from ..models import User
from ..roles import AUTHENTICATED, public, requires
from ..throttle import note_burst
from ..web import CONFIG, FORM_TYPES, THROTTLE, ApiError, db_run, identity, read_form, read_json, render

routes = web.RouteTableDef()
# The admin's links on the home page: (URL, key of its label in the catalogue's "home" section).
ADMIN_LINKS = [("/api/users", "users"), ("/api/stations", "stations"), ("/api/exam-days", "exam-days"),
               ("/api/specialties", "specialties"), ("/api/tasks", "tasks"), ("/api/candidates", "candidates"),
               ("/api/audit/verify", "audit")]


@routes.get("/health", allow_head=False)
@public
async def health(request: web.Request) -> web.Response:
    from sqlalchemy import text

    await db_run(request, lambda s: s.execute(text("SELECT 1")))
    return web.json_response({"ok": True})


def _set_cookie(request: web.Request, resp: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    resp.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=not request.app[CONFIG].insecure_cookies,
    )


@routes.get("/login", allow_head=False)
@public
async def login_form(request: web.Request) -> web.Response:
    # Login CSRF: a double-submit token (cookie + form field), since there is no session yet.
    token = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    resp = render(request, "login.html", {"csrf_form": token, "error": None})
    resp.headers[auth.CSRF_HEADER] = token
    _set_cookie(request, resp, auth.LOGIN_CSRF_COOKIE, token, 3600)
    return resp


# Argon2id takes its memory (64 MiB by default) per comparison: a few at a time, the rest wait in a bounded
# queue; past that a login is answered 503 at once instead of piling up threads and memory.
PASSWORD_CHECKS_AT_ONCE = 2
PASSWORD_CHECKS_WAITING = 64
_slots: weakref.WeakKeyDictionary[web.Application, list[Any]] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def _password_slot(request: web.Request) -> AsyncIterator[None]:
    slot = _slots.setdefault(request.app, [asyncio.Semaphore(PASSWORD_CHECKS_AT_ONCE), 0])
    if slot[1] >= PASSWORD_CHECKS_WAITING:
        raise ApiError(503, "too many logins at once; try again in a moment", "login", retry_after_s=1)
    slot[1] += 1
    try:
        async with slot[0]:
            yield
    finally:
        slot[1] -= 1


@routes.post("/login")
@public
async def login(request: web.Request) -> web.StreamResponse:
    is_json = request.content_type == "application/json"
    if is_json:
        body = await read_json(request)
        given_csrf = request.headers.get(auth.CSRF_HEADER)
    elif request.content_type in FORM_TYPES:
        body = await read_form(request)
        given_csrf = body.get(auth.CSRF_FIELD) or request.headers.get(auth.CSRF_HEADER)
    else:
        raise ApiError(415, "expected a form or application/json", "Content-Type")
    if not auth.csrf_ok(request.cookies.get(auth.LOGIN_CSRF_COOKIE), given_csrf):
        raise ApiError(403, "CSRF token missing or wrong; load /login first", "csrf_token")
    login_name, password = body.get("login"), body.get("password")
    if not isinstance(login_name, str):
        raise ApiError(422, "login and password are required", "login")
    if not isinstance(password, str) or len(password) > 1024 or not auth.encodable(password):
        raise ApiError(422, "login and password are required (a password is up to 1024 characters)", "password")
    login_name = login_name.strip().lower()[:64]
    if not auth.LOGIN_RE.fullmatch(login_name):
        # Cannot be an account; still counted and audited, in a form every database can store.
        login_name = ascii(login_name)[:64]
    cfg = request.app[CONFIG]
    ip = client_address(request, cfg.trusted_proxies)
    throttle = request.app[THROTTLE]

    def reserve(s):
        # Counted as a failure before the password is compared (throttle.py): parallel attempts see each other.
        verdict = throttle.reserve(s, login_name, ip)
        if verdict.refused:
            # One audit row per burst: the address hammering a throttled login cannot grow the log.
            note_burst(s, f"login-throttled:{ip}", cfg.login_window_s, f"ip:{ip}", audit.LOGIN_THROTTLED,
                       login_name, {"ip": ip, "limit": verdict.reason})
            return verdict, None
        user = s.scalar(select(User).where(User.login == login_name, User.active.is_(True)))
        return verdict, None if user is None else user.password_hash

    verdict, stored_hash = await db_run(request, reserve)
    outcome, info = "throttled", None
    if not verdict.refused:
        async with _password_slot(request):
            matches = await asyncio.to_thread(auth.password_matches, stored_hash, password)

        def settle(s: Session) -> tuple[str, tuple[str, str, str] | None]:
            user = s.scalar(select(User).where(User.login == login_name, User.active.is_(True))) if matches else None
            ok = user is not None and user.password_hash == stored_hash
            throttle.settle(s, verdict.attempt_id, ok)
            if not ok or user is None:
                audit.append(s, f"ip:{ip}", audit.LOGIN_FAILED, login_name)
                return "bad", None
            auth.rehash_if_needed(user, password)
            token, row = auth.create_session(s, user, cfg.session_ttl_s)
            audit.append(s, f"user:{user.login}", audit.LOGIN, user.login, {"ip": ip})
            return token, (user.login, user.role, row.csrf_token)

        outcome, info = await db_run(request, settle)
    lang = lang_of(request)
    if info is None:
        status = 429 if outcome == "throttled" else 401
        if is_json:
            msg = "too many failed attempts; try later" if status == 429 else "wrong login or password"
            resp: web.StreamResponse = web.json_response({"error": msg, "where": "login"}, status=status)
        else:
            resp = render(request, "login.html", {"csrf_form": given_csrf or "", "error": outcome}, status=status)
        if status == 429:
            resp.headers["Retry-After"] = str(verdict.retry_after_s)
        return resp
    login_value, role, csrf = info
    if is_json:
        resp = web.json_response({"login": login_value, "role": role, "csrf_token": csrf})
    else:
        resp = web.Response(status=303, headers={"Location": f"/?lang={lang}"})
    _set_cookie(request, resp, auth.SESSION_COOKIE, outcome, cfg.session_ttl_s)
    resp.del_cookie(auth.LOGIN_CSRF_COOKIE, path="/")
    return resp


@routes.post("/logout")
@requires(AUTHENTICATED)
async def logout(request: web.Request) -> web.StreamResponse:
    who = identity(request)

    def end(s):
        auth.end_session(s, who.session_id)  # type: ignore[arg-type]
        audit.append(s, who.actor, audit.LOGOUT, who.login or "")

    await db_run(request, end)
    if request.content_type == "application/json" or "text/html" not in request.headers.get("Accept", ""):
        resp: web.StreamResponse = web.json_response({"ok": True})
    else:
        resp = web.Response(status=303, headers={"Location": "/login"})
    resp.del_cookie(auth.SESSION_COOKIE, path="/")
    return resp


@routes.get("/", allow_head=False)
@requires(AUTHENTICATED)
async def index(request: web.Request) -> web.Response:
    who = identity(request)
    context = {"login": who.login or "", "role": who.principal or "", "csrf": who.csrf_token or "",
               "meta": {"csrf-token": who.csrf_token or ""}, "admin_links": ADMIN_LINKS}
    return render(request, "home.html", context)


@routes.get("/api/me", allow_head=False)
@requires(AUTHENTICATED)
async def me(request: web.Request) -> web.Response:
    who = identity(request)
    return web.json_response({"login": who.login, "role": who.principal, "csrf_token": who.csrf_token})
