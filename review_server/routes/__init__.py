"""HTTP routes, grouped by what they serve. Each handler declares its permission (roles.requires)."""

from __future__ import annotations

from aiohttp import web

from . import admin, archive, marks, media, schedule, session


def setup_routes(app: web.Application) -> None:
    for module in (session, admin, schedule, media, marks, archive):
        app.router.add_routes(module.routes)
