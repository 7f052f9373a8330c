"""The centre console's stations board (admin): `GET /admin`, the page a technician keeps open all day, and
`GET /admin/board`, its rows alone, which the page's script fetches again every few seconds (static/pages/
refresh.js). The rows are stations_board.py's; both render templates/_board_rows.html."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from aiohttp import web
from yarl import URL

from .. import stations_board
from ..i18n import lang_of
from ..roles import requires
from ..web import CONFIG, db_run, render

routes = web.RouteTableDef()
NO_STORE = {"Cache-Control": "no-store"}


def lang_query(request: web.Request) -> str:
    """The query that keeps a link in the page's language ("" in Russian, the default)."""
    return "?lang=en" if lang_of(request) == "en" else ""


def done_redirect(request: web.Request, path: str, done: str) -> web.Response:
    """After a form's change: back to the page (303, so a reload does not post again), which says what was done
    (the key of a text in its section, "done.<key>")."""
    query = {"done": done} | ({"lang": "en"} if lang_of(request) == "en" else {})
    return web.Response(status=303, headers={"Location": str(URL(path).with_query(query))})


def centre_today(request: web.Request) -> dt.date:
    """Today on the centre's clock (its time zone)."""
    return dt.datetime.now(zoneinfo.ZoneInfo(request.app[CONFIG].timezone)).date()


@routes.get("/admin", allow_head=False)
@requires("stations.manage")
async def board_page(request: web.Request) -> web.Response:
    rows = await db_run(request, stations_board.rows)
    return render(request, "admin_board.html", {"rows": rows, "q": lang_query(request)}, headers=NO_STORE)


@routes.get("/admin/board", allow_head=False)
@requires("stations.manage")
async def board_rows(request: web.Request) -> web.Response:
    rows = await db_run(request, stations_board.rows)
    return render(request, "_board_rows.html", {"rows": rows}, headers=NO_STORE)
