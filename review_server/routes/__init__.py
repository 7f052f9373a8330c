"""HTTP routes: one router (aiohttp RouteTableDef) per resource module, all included from ROUTERS below. Each
handler declares its permission (roles.requires); tests/server/test_route_matrix.py holds who may use which."""

from __future__ import annotations

from aiohttp import web

from .. import live, tus
from . import (
    admin,
    archive,
    archive_page,
    assets,
    attempt_page,
    exam_clock,
    exports,
    health_events,
    live_access,
    live_attempt,
    marks,
    media,
    protocols,
    quality,
    retention,
    review_links,
    schedule,
    search,
    session,
    tablet,
)

ROUTERS: tuple[web.RouteTableDef, ...] = (
    session.routes,
    assets.routes,
    admin.routes,
    schedule.routes,
    exam_clock.routes,
    media.routes,
    tus.routes,
    marks.routes,
    health_events.routes,
    tablet.routes,
    live.routes,
    live_attempt.routes,
    attempt_page.routes,
    review_links.routes,
    archive.routes,
    archive_page.routes,
    search.routes,
    exports.routes,
    protocols.routes,
    retention.routes,
    quality.routes,
)


def setup_routes(app: web.Application) -> None:
    """Every router, and the state the ingest (tus) and live routes keep on the application."""
    for table in ROUTERS:
        app.router.add_routes(table)
    tus.configure(app)
    live_access.setup(app)
