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
    console,
    console_records,
    console_stations,
    console_users,
    days_admin,
    days_close,
    exam_clock,
    examiner_home,
    exports,
    flags,
    health_events,
    live_access,
    live_attempt,
    marks,
    media,
    ministry,
    protocols,
    quality,
    readiness,
    retention,
    review_links,
    schedule,
    search,
    session,
    station_status,
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
    station_status.routes,
    tablet.routes,
    live.routes,
    live_attempt.routes,
    flags.routes,
    attempt_page.routes,
    review_links.routes,
    archive.routes,
    archive_page.routes,
    search.routes,
    exports.routes,
    protocols.routes,
    retention.routes,
    quality.routes,
    readiness.routes,
    days_admin.routes,
    days_close.routes,
    console.routes,
    console_users.routes,
    console_stations.routes,
    console_records.routes,
    ministry.routes,
    examiner_home.routes,
)


def setup_routes(app: web.Application) -> None:
    """Every router, and the state the ingest (tus) and live routes keep on the application."""
    for table in ROUTERS:
        app.router.add_routes(table)
    tus.configure(app)
    live_access.setup(app)
    readiness.setup(app)
    days_close.setup(app)
