"""The server's answers to the live relay's questions (review_server/live.py knows nothing of accounts or the
database): who is asking, which stations the day has, who may watch which station, what the grid page needs to
mark beside the picture, and whether a publishing station's token is still valid."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import auth, live
from ..models import Station
from ..web import db_run, identity
from .scope import examiner_may


def setup(app: web.Application) -> None:
    live.configure(app, who=_live_who, day_stations=_stations, may_view=_may_view, page_meta=_page_meta,
                   still_ok=_token_still_valid)


async def _token_still_valid(request: web.Request) -> bool:
    """The station token that opened a live publish socket is still valid (not revoked)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return await db_run(request, lambda s: auth.identity_from_station_token(s, token.strip()) is not None)


def _page_meta(request: web.Request) -> dict[str, str]:
    """For marking on the grid page: the session's CSRF token, login and role."""
    who = identity(request)
    return {"csrf-token": who.csrf_token or "", "osce-login": who.login or "", "osce-role": who.principal or ""}


def _live_who(request: web.Request) -> tuple[str | None, str | None]:
    who = identity(request)
    return who.principal, who.station_code


async def _stations(request: web.Request) -> list[dict[str, str]]:
    """Every station, so that a silent one shows in the grid as silent rather than missing."""

    def query(s: Session) -> list[dict[str, str]]:
        stations = s.scalars(select(Station).order_by(Station.code))
        return [{"code": st.code, "name": st.name or st.code} for st in stations]

    return await db_run(request, query)


async def _may_view(request: web.Request, station: str) -> bool:
    """Examiners watch only the stations assigned to them; observers and admins watch all."""
    who = identity(request)

    def query(s: Session) -> bool:
        st = s.scalar(select(Station).where(Station.code == station))
        return st is not None and examiner_may(s, who, st.id, None)

    return await db_run(request, query)
