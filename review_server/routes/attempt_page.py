"""The attempt review page's handlers: the page (templates/attempt.html, its data and rules in attempt_view.py)
and its tracks.

- GET /attempts/{attempt_id}[?rec=KEY][&lang=en]: the page (examiners of the station, archivists); audited.
- GET /attempts/{attempt_id}/recordings/{key}/{track}[?rendition=1]: one track as one MP4 file with byte ranges
  (routes/track_file.py: the init file, an index, the media fragments), so that Chromium's plain <video> plays and
  seeks it without Media Source Extensions; ?rendition=1: its H.264 copy for viewing (review_server/renditions.py)
  when the original's codec is one the browser cannot decode. Every request that may include the file's first
  byte is audited: a whole copy cannot be had without one, and a player's follow-up range requests make no noise.
The page's script and style are public static files (/static/attempt.js, /static/review.css), so the appeal
reviewer's link page (routes/review_links.py, the same template with a banner), which has no session, loads them.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import attempt_view, audit
from ..i18n import lang_of
from ..ident import centre_of
from ..models import Attempt, Recording
from ..roles import requires
from ..validate import CODE_RE, path_ident
from ..web import CONFIG, RENDITIONS, STORAGE, ApiError, db_run, identity, render
from .scope import require_assigned
from .track_file import Piece, Viewing, rendition_pieces, send_track, track_pieces

routes = web.RouteTableDef()

ATTEMPT_VIEW = "attempt.view"  # the page was shown (audit action)
ATTEMPT_MEDIA = "attempt.media"  # a track was fetched from its first byte


# -- routes ------------------------------------------------------------------------------------------------


def _attempt(s: Session, request: web.Request, attempt_id: str) -> Attempt:
    att = s.get(Attempt, attempt_id)
    missing = ApiError(404, f"no attempt {attempt_id!r}", "URL attempt_id")
    if att is None:
        raise missing
    require_assigned(s, identity(request), att.station_id, att.exam_day_id, missing)
    return att


@routes.get("/attempts/{attempt_id}", allow_head=False)
@requires("attempts.review")
async def attempt_page(request: web.Request) -> web.Response:
    attempt_id = path_ident(request, "attempt_id")
    rec = request.query.get("rec")
    if rec is not None and not CODE_RE.fullmatch(rec):
        raise ApiError(400, f"must match {CODE_RE.pattern}", "query rec")
    who = identity(request)

    def q(s: Session) -> attempt_view.PageData:
        att = _attempt(s, request, attempt_id)
        try:
            data = attempt_view.gather(s, att, rec, request.app[STORAGE])
        except attempt_view.RecordingNotFound as exc:
            raise ApiError(404, str(exc), "query rec") from None
        audit.append(s, who.actor, ATTEMPT_VIEW, att.id, {"recording": data.recording, "ip": request.remote})
        return data

    data = await db_run(request, q)
    if data.rendition_pending:
        request.app[RENDITIONS].kick()
    cfg = request.app[CONFIG]
    context = attempt_view.context(data, lang_of(request), f"/attempts/{data.attempt_id}/recordings",
                                   centre=centre_of(cfg) | {"timezone": cfg.timezone})
    return render(request, attempt_view.TEMPLATE, context)


@routes.get("/attempts/{attempt_id}/recordings/{key}/{track}", allow_head=False)
@requires("attempts.review")
async def attempt_track(request: web.Request) -> web.StreamResponse:
    attempt_id = path_ident(request, "attempt_id")
    key, track = path_ident(request, "key"), path_ident(request, "track")
    who = identity(request)

    def q(s: Session) -> list[Piece]:
        att = _attempt(s, request, attempt_id)
        rec = s.scalar(select(Recording).where(Recording.key == key, Recording.attempt_id == att.id))
        if rec is None:
            raise ApiError(404, "no such recording for this attempt", "URL key")
        return rendition_pieces(s, rec, track) if request.query.get("rendition") == "1" else track_pieces(s, rec, track)

    pieces = await db_run(request, q)
    viewing = Viewing(who.actor, ATTEMPT_MEDIA, key, {"attempt_id": attempt_id, "track": track})
    return await send_track(request, pieces, viewing)
