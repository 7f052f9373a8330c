"""The review server application: `create_app(config)` is the one factory that wires everything.

Middlewares, outermost first:
- errors: every failure becomes JSON {"error": what, "where": where} with a 4xx/5xx status;
- body size: a declared Content-Length over the limit is refused before the body is read
  (the fragment upload streams and checks its own, larger limit);
- auth: finds who is asking (station bearer token or session cookie), enforces the permission the
  route declared with roles.requires (a route that declares none is refused: fail closed), and checks
  the CSRF token on every state-changing request made with a session cookie;
- body deadline: a request body is read whole within body_timeout_s before the handler runs, else 408
  (a client trickling its body would otherwise hold the connection for ever).

Every response, whatever made it (a handler, a middleware, the router's 404, a file, a WebSocket upgrade),
carries the security headers (security_headers, on aiohttp's response-prepare signal): a Content-Security-Policy
that allows no inline script or style and no framing, nosniff, no referrer, and HSTS over TLS.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy.exc import IntegrityError

from . import auth
from .config import ServerConfig
from .db import Database
from .renditions import RenditionMaker
from .roles import PUBLIC, allowed, permission_of
from .routes import setup_routes
from .storage import MediaStorage, storage_from_config
from .throttle import LoginThrottle
from .web import (
    CONFIG,
    DB,
    FORM_TYPES,
    IDENTITY,
    RENDITIONS,
    STORAGE,
    THROTTLE,
    ApiError,
    body_deadline,
    db_run,
    error_response,
    read_form,
    setup_templates,
)

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Scripts and styles only from the server's own files (templates carry none inline); pictures and video may also
# be data: or blob: URLs (the live grid plays Media Source blobs); fetches and WebSockets to this server only.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
HSTS = "max-age=31536000"  # only over TLS: a browser ignores it on plain HTTP, and it must not pin a test server


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        resp = error_response(exc.status, exc.error, exc.where, **exc.extra)
        if exc.status == 408:
            resp.force_close()  # the rest of that body may still be on its way: no next request on this connection
        return resp
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        where = None
        if exc.status == 413:
            where = "body"
        elif exc.status in (404, 405):
            where = f"{request.method} {request.path}"
        return error_response(exc.status, exc.reason, where)
    except IntegrityError:
        # A uniqueness race that a handler's own check could not see (two requests at once).
        log.warning("integrity conflict in %s %s", request.method, request.path, exc_info=True)
        return error_response(409, "conflicts with data stored meanwhile; retry", f"{request.method} {request.path}")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal error; see the server log", f"{request.method} {request.path}")


def _route_handler(request: web.Request) -> Any:
    route = request.match_info.route
    return getattr(route, "handler", None)


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    limit = request.app[CONFIG].max_json_bytes
    if getattr(_route_handler(request), "osce_streaming_body", False):
        limit = request.app[CONFIG].max_fragment_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"body of {request.content_length} bytes is over the limit of {limit}", "body")
    return await handler(request)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        raise request.match_info.http_exception  # 404/405: nothing to protect
    permission = permission_of(_route_handler(request))
    if permission is None:
        raise ApiError(500, "route declares no permission", f"{request.method} {request.path}")

    who = await _identify(request)
    request[IDENTITY] = who
    if not allowed(permission, who.principal):
        if who.principal is None:
            if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
                raise web.HTTPSeeOther("/login")
            raise ApiError(401, "authentication required", "Authorization or session cookie")
        raise ApiError(403, f"{who.principal} may not do this (needs {permission})", f"{request.method} {request.path}")
    if who.kind == "user" and request.method in UNSAFE_METHODS and permission != PUBLIC:
        given = request.headers.get(auth.CSRF_HEADER)
        if given is None and request.content_type in FORM_TYPES:
            given = (await read_form(request)).get(auth.CSRF_FIELD) or None
        if not auth.csrf_ok(who.csrf_token, given):
            raise ApiError(403, "CSRF token missing or wrong", f"{auth.CSRF_HEADER} header or {auth.CSRF_FIELD} field")
    return await handler(request)


@web.middleware
async def body_deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the (size-limited) body whole within body_timeout_s; the handler's read_json, request.read() and
    read_form then get aiohttp's cached copy. Streaming bodies (tus, fragment PUT) are read by their handler."""
    if request.body_exists and not getattr(_route_handler(request), "osce_streaming_body", False):
        if request.content_type in FORM_TYPES:
            await read_form(request)  # request.post() consumes multipart from the stream, so not read() here
        else:
            async with body_deadline(request):
                await request.read()
    return await handler(request)


async def _identify(request: web.Request) -> auth.Identity:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "expected 'Authorization: Bearer <station token>'", "Authorization")
        found = await db_run(request, lambda s: auth.identity_from_station_token(s, token.strip()))
        if found is None:
            raise ApiError(401, "station token unknown or revoked", "Authorization")
        return found
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    if cookie:
        found = await db_run(request, lambda s: auth.identity_from_session(s, cookie))
        if found is not None:
            return found
    return auth.ANONYMOUS


def create_app(config: ServerConfig, storage: MediaStorage | None = None) -> web.Application:
    """Build the application. The database must be migrated (`osce server db upgrade`) beforehand."""
    app = web.Application(
        middlewares=[error_middleware, body_limit_middleware, auth_middleware, body_deadline_middleware],
        client_max_size=config.max_json_bytes,
    )
    auth.configure_passwords(config.argon2_time_cost, config.argon2_memory_kib, config.argon2_parallelism)
    app[CONFIG] = config
    app[DB] = Database(config.database_url)
    app[STORAGE] = storage if storage is not None else storage_from_config(config)
    app[THROTTLE] = LoginThrottle(config.login_max_failures_per_account, config.login_max_failures_per_ip,
                                  config.login_window_s, config.login_delay_s)
    app[RENDITIONS] = RenditionMaker(app[DB], app[STORAGE])
    app.on_response_prepare.append(security_headers)
    setup_templates(app)
    setup_routes(app)

    async def _close(app: web.Application) -> None:
        app[RENDITIONS].close()
        app[DB].dispose()

    app.on_cleanup.append(_close)
    return app
