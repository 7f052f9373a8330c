"""The review server's shared HTTP kernel: what every route module needs from the application, in one small
module that imports no route and no application (so nothing here can form an import cycle).

- ApiError / error_response: a refusal with what is wrong and where (a field, header or part of the URL);
- the application's and the request's keys (CONFIG, DB, STORAGE, THROTTLE, IDENTITY) and identity(request);
- db_run: a function on a database session, in one transaction, on a worker thread;
- the body helpers: body_deadline, read_form, read_json (every request body is read through these);
- pages: setup_templates (Jinja2 through aiohttp-jinja2, autoescaped) and render(request, template, context),
  which gives every page its language, its texts (i18n/) and the link to the other language.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import zoneinfo
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp_jinja2
import jinja2
from aiohttp import web
from sqlalchemy.orm import Session

from . import auth, i18n, nav
from .config import ServerConfig
from .db import Database
from .renditions import RenditionMaker
from .storage import MediaStorage
from .throttle import LoginThrottle

T = TypeVar("T")

CONFIG = web.AppKey("config", ServerConfig)
DB = web.AppKey("db", Database)
STORAGE = web.AppKey("storage", MediaStorage)
THROTTLE = web.AppKey("throttle", LoginThrottle)
RENDITIONS = web.AppKey("renditions", RenditionMaker)
IDENTITY = web.RequestKey("identity", auth.Identity)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class ApiError(Exception):
    """A request the server refuses, with what is wrong and where (a field, header or part of the URL)."""

    def __init__(self, status: int, error: str, where: str | None = None, **extra: Any) -> None:
        super().__init__(error)
        self.status, self.error, self.where, self.extra = status, error, where, extra


def error_response(status: int, error: str, where: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": error}
    if where:
        body["where"] = where
    body.update(extra)
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def identity(request: web.Request) -> auth.Identity:
    return request.get(IDENTITY, auth.ANONYMOUS)


async def db_run(request: web.Request | web.Application, fn: Callable[[Session], T]) -> T:
    """Run fn(session) in one transaction on a worker thread (SQLAlchemy here is synchronous)."""
    app = request.app if isinstance(request, web.Request) else request
    return await asyncio.to_thread(app[DB].run, fn)


@contextlib.asynccontextmanager
async def body_deadline(request: web.Request) -> AsyncIterator[None]:
    """Reads of the request body inside must finish within body_timeout_s, else 408. The one way bodies are
    read: whole bodies by app.body_deadline_middleware and read_form, each chunk of the streaming fragment PUT
    (routes/media.py). Not used by the tus receiver (tus.py has its own per-chunk READ_TIMEOUT_S) nor the
    live publisher (a WebSocket, long-lived by design, with its heartbeat)."""
    seconds = request.app[CONFIG].body_timeout_s
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {seconds} s", "body") from None


async def read_form(request: web.Request) -> dict[str, str]:
    """The text fields of a form body, or a 400 saying it is malformed (file parts are ignored)."""
    try:
        async with body_deadline(request):
            form = await request.post()  # cached by aiohttp: the handler's read_form gets the same
    except ApiError:
        raise  # 408
    except web.HTTPException:
        raise  # 413 from client_max_size
    except Exception as exc:  # aiohttp raises assorted errors on a broken multipart or urlencoded body
        raise ApiError(400, f"malformed form body ({type(exc).__name__})", "body") from None
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or a 4xx saying what is wrong with it."""
    if request.content_type != "application/json":
        raise ApiError(415, f"expected Content-Type application/json, got {request.content_type!r}", "Content-Type")
    raw = await request.read()  # client_max_size applies: 413 if too large
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "body is not UTF-8", f"body byte {exc.start}") from exc
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc.msg}", f"body line {exc.lineno} column {exc.colno}") from exc
    except ValueError as exc:  # NaN/Infinity, or an integer of thousands of digits
        raise ApiError(400, f"malformed JSON: {str(exc)[:200]}", "body") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply", "body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "expected a JSON object", "body")
    return body


TEMPLATES = Path(__file__).resolve().parent / "templates"


def setup_templates(app: web.Application) -> None:
    """Jinja2 with autoescape on for every template (a value is escaped where it is inserted, always)."""
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["repr"] = repr


def local_time(when: dt.datetime | None, timezone: str, form: str = "datetime") -> str:
    """A moment as the centre's clock shows it: "datetime" 06.12.2026 09:30:05, "time" 09:30:05; "—" for none."""
    if when is None:
        return "—"
    local = when.astimezone(zoneinfo.ZoneInfo(timezone))
    return local.strftime("%H:%M:%S" if form == "time" else "%d.%m.%Y %H:%M:%S")


def render(request: web.Request, template: str, context: Mapping[str, Any] | None = None, *,
           lang: str | None = None, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A page: templates/<template> with `context`, plus what every page has: lang, t (the catalogue in that
    language), the other language and this page's URL in it, the number and result formatters, the meta tags named
    in `meta` (for the page's script), and the site bar: the navigation of the signed-in user's role (nav.py)."""
    lang = lang or i18n.lang_of(request)
    other = i18n.other(lang)
    who = identity(request)
    suffix = "?lang=en" if lang == "en" else ""
    here = nav.current(who.principal, request.path)
    page: dict[str, Any] = {
        "lang": lang,
        "t": i18n.CATALOGUE[lang],
        "other_lang": other,
        "other_href": str(request.rel_url.update_query(lang=other)),
        "decimal": lambda x, digits=1: i18n.decimal(x, lang, digits),
        "result_text": lambda r: i18n.result_text(r, lang),
        "when": lambda t, form="datetime": local_time(t, request.app[CONFIG].timezone, form),
        "meta": {},
        "texts": None,
        # The site bar: the role's entries (nav.py), who is signed in (with the logout form's CSRF token).
        "nav": [{"key": e.key, "href": e.href + suffix, "current": e.href == here} for e in nav.entries(who.principal)],
        "user": {"login": who.login, "role": who.principal, "csrf": who.csrf_token} if who.kind == "user" else None,
    }
    response = aiohttp_jinja2.render_template(template, request, page | dict(context or {}), status=status)
    response.headers.update(headers or {})
    return response
