"""The server's answers to the live relay's questions (review_server/live.py knows nothing of accounts or the
database): who is asking, which stations the day has, who may watch which station, what the grid page needs to
mark beside the picture, whether a publishing station's token is still valid, and whether a viewer's session
still lives (signed URLs and open viewer sockets end with it)."""

from __future__ import annotations

import re

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import auth, ident, live
from ..models import Station, User, UserSession, utcnow
from ..web import CONFIG, db_run, identity
from .scope import examiner_may


def setup(app: web.Application) -> None:
    cfg = app[CONFIG]
    live.configure(app, who=_live_who, day_stations=_stations, may_view=_may_view, page_meta=_page_meta,
                   still_ok=_token_still_valid,
                   hub=live.LiveHub(max_cameras=cfg.live_max_cameras, idle_s=cfg.live_idle_s),
                   session_of=_session_of, session_alive=_session_alive,
                   centre=ident.centre_of(cfg) | {"timezone": cfg.timezone})


async def _token_still_valid(request: web.Request) -> bool:
    """The station token that opened a live publish socket is still valid (not revoked)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return await db_run(request, lambda s: auth.identity_from_station_token(s, token.strip()) is not None)


def _session_of(request: web.Request) -> str | None:
    """The viewer's session row id (not its secret cookie): what a signed live URL is tied to."""
    session_id = identity(request).session_id
    return None if session_id is None else str(session_id)


async def _session_alive(request: web.Request, session: str, station: str) -> bool:
    """The session still lives (not logged out or expired, its user active) and may still watch the station."""

    def query(s: Session) -> bool:
        row = s.get(UserSession, int(session)) if re.fullmatch(r"[0-9]{1,19}", session) else None
        user = s.get(User, row.user_id) if row is not None else None
        if row is None or user is None or not user.active or row.expires_at <= utcnow():
            return False
        who = auth.Identity("user", user.role, user_id=user.id, login=user.login, session_id=row.id)
        st = s.scalar(select(Station).where(Station.code == station))
        return st is not None and examiner_may(s, who, st.id, None)

    return await db_run(request, query)


def _page_meta(request: web.Request) -> dict[str, str]:
    """For marking on the grid page: the session's CSRF token, login and role."""
    who = identity(request)
    return {"csrf-token": who.csrf_token or "", "osce-login": who.login or "", "osce-role": who.principal or ""}


def _live_who(request: web.Request) -> tuple[str | None, str | None]:
    who = identity(request)
    return who.principal, who.station_code


async def _stations(request: web.Request) -> list[dict[str, str]]:
    """Every station, so that a silent one shows in the grid as silent rather than missing."""

    def query(s: Session) -> list[dict[str, str]]:  # with the room drawn over its picture (ident.py)
        stations = s.scalars(select(Station).order_by(Station.code))
        return [{"code": st.code, "name": st.name or st.code, "room": st.room} for st in stations]

    return await db_run(request, query)


async def _may_view(request: web.Request, station: str) -> bool:
    """Examiners watch only the stations assigned to them; observers and admins watch all."""
    who = identity(request)

    def query(s: Session) -> bool:
        st = s.scalar(select(Station).where(Station.code == station))
        return st is not None and examiner_may(s, who, st.id, None)

    return await db_run(request, query)
