"""The agent's HTML pages (the tablet's marking page, the room's clock page) and the headers of every answer.

Pages are Jinja2 templates (station_agent/templates/, autoescape on) rendered through aiohttp-jinja2, as the
server's are; their texts come from the catalogue (texts.py) in the language `lang_of` picks. Scripts and styles
are files under /static/, never inline, so the Content-Security-Policy can forbid inline script and style.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from .texts import LANGS, catalogue

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def lang_of(request: web.Request) -> str:
    """The page's language: `?lang=en` or `?lang=ru`; Russian otherwise."""
    lang = request.query.get("lang", "")
    return lang if lang in LANGS else LANGS[0]


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def setup_pages(app: web.Application) -> None:
    """Templates, /static/ and the security headers for an agent app."""
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                         undefined=jinja2.StrictUndefined)
    app.router.add_static("/static/", STATIC_DIR)
    app.on_response_prepare.append(_security_headers)


def render(template: str, request: web.Request, **context: Any) -> web.Response:
    lang = lang_of(request)
    texts = catalogue(lang)
    other = LANGS[1 - LANGS.index(lang)]
    response = aiohttp_jinja2.render_template(
        template, request, {"lang": lang, "other_lang": other, "t": texts,
                            "texts_json": json.dumps(texts, ensure_ascii=False), **context})
    response.headers["Cache-Control"] = "no-store"
    return response
