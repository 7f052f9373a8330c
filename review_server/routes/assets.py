"""GET /static/{name}: the pages' shared style and scripts, public (the login page and the appeal reviewer's
link page have no session; nothing here is secret: it is the repository's own static/ folder). A fixed list
maps names to files, so no path from the URL reaches the file system."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..roles import public
from ..web import ApiError

routes = web.RouteTableDef()

STATIC = Path(__file__).resolve().parent.parent / "static"
CSS, JS = "text/css; charset=utf-8", "text/javascript; charset=utf-8"
ASSETS: dict[str, tuple[str, str]] = {
    "base.css": ("pages/base.css", CSS),
    "quality.css": ("pages/quality.css", CSS),
    "days.css": ("pages/days.css", CSS),
    "review.css": ("review/review.css", CSS),
    "attempt.js": ("review/attempt.js", JS),
    "ident.js": ("pages/ident.js", JS),
    "readiness.css": ("readiness/readiness.css", CSS),
    "readiness.js": ("readiness/readiness.js", JS),
    "console.css": ("console/console.css", CSS),
    "refresh.js": ("pages/refresh.js", JS),
}


@routes.get("/static/{name}", allow_head=False)
@public
async def asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise ApiError(404, f"no asset {name!r}", "URL name")
    path, content_type = ASSETS[name]
    return web.FileResponse(STATIC / path, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
