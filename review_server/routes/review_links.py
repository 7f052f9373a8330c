"""Time-limited links for an appeal reviewer: one attempt's video and marks together, nothing else.

An admin issues a link (reviewer's name, minutes valid); the token is random, shown once, stored as its
SHA-256. The page and its video need no account, only an unexpired, unrevoked token; every issue, view,
video request and revocation is audited.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import attempt_view, audit
from ..i18n import lang_of
from ..ident import centre_of
from ..models import Attempt, Recording, ReviewLink
from ..roles import PUBLIC, requires
from ..validate import CODE_RE, Fields, path_ident, path_int
from ..web import CONFIG, RENDITIONS, STORAGE, ApiError, db_run, identity, read_json, render
from . import track_file

routes = web.RouteTableDef()

TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")
ISSUE, VIEW, MEDIA, REVOKE = "review_link.issue", "review_link.view", "review_link.media", "review_link.revoke"
MAX_MINUTES = 14 * 24 * 60


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@routes.post("/api/attempts/{attempt_id}/review-links")
@requires("review_links.manage")
async def issue(request: web.Request) -> web.Response:
    """Body {"reviewer": name, "minutes": N}: 201 with the link (shown once) and when it expires."""
    attempt_id = path_ident(request, "attempt_id")
    f = Fields(await read_json(request), allowed={"reviewer", "minutes"})
    reviewer, minutes = f.name("reviewer", max_len=200), f.integer("minutes", lo=1, hi=MAX_MINUTES)
    if not reviewer.strip():
        raise ApiError(422, "required", "reviewer")
    who = identity(request)
    token = secrets.token_urlsafe(32)

    def add(s: Session) -> dict[str, Any]:
        if s.get(Attempt, attempt_id) is None:
            raise ApiError(404, f"no attempt {attempt_id!r}", "URL attempt_id")
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
        link = ReviewLink(
            token_sha256=_sha(token), attempt_id=attempt_id, reviewer=reviewer, created_by=who.actor, expires_at=expires
        )
        s.add(link)
        s.flush()
        audit.append(s, who.actor, ISSUE, attempt_id, {"link_id": link.id, "reviewer": reviewer, "minutes": minutes})
        return {"id": link.id, "url": f"/review/{token}", "expires_at": expires.isoformat(), "reviewer": reviewer}

    return web.json_response(await db_run(request, add), status=201)


@routes.delete("/api/review-links/{link_id}")
@requires("review_links.manage")
async def revoke(request: web.Request) -> web.Response:
    link_id = path_int(request, "link_id")
    who = identity(request)

    def rev(s: Session) -> dict[str, Any]:
        link = s.get(ReviewLink, link_id)
        if link is None:
            raise ApiError(404, f"no review link {link_id}", "URL link_id")
        if link.revoked_at is None:
            link.revoked_at = dt.datetime.now(dt.UTC)
            audit.append(s, who.actor, REVOKE, link.attempt_id, {"link_id": link.id})
        return {"id": link.id, "revoked_at": link.revoked_at.isoformat()}

    return web.json_response(await db_run(request, rev))


def _link(s: Session, token: str) -> ReviewLink:
    if not TOKEN_RE.fullmatch(token):
        raise ApiError(404, "no such review link", "URL token")
    link = s.scalar(select(ReviewLink).where(ReviewLink.token_sha256 == _sha(token)))
    if link is None:
        raise ApiError(404, "no such review link", "URL token")
    if link.revoked_at is not None or link.expires_at <= dt.datetime.now(dt.UTC):
        raise ApiError(410, "this review link has expired or was revoked", "URL token")
    return link


def _actor(link: ReviewLink, request: web.Request) -> str:
    return f"review-link:{link.id}:{link.reviewer}"[:200]


@routes.get("/review/{token}", allow_head=False)
@requires(PUBLIC)
async def page(request: web.Request) -> web.Response:
    """The attempt page (templates/attempt.html: every camera in sync, marks on the timeline, the checklist with
    each examiner's marks and corrections), with the video fetched through this link."""
    token = request.match_info["token"]
    rec = request.query.get("rec")
    if rec is not None and not CODE_RE.fullmatch(rec):
        raise ApiError(400, f"must match {CODE_RE.pattern}", "query rec")
    lang = lang_of(request)

    def q(s: Session) -> tuple[attempt_view.PageData, str]:
        link = _link(s, token)
        att = s.get(Attempt, link.attempt_id)
        assert att is not None
        try:
            data = attempt_view.gather(s, att, rec, request.app[STORAGE])
        except attempt_view.RecordingNotFound as exc:
            raise ApiError(404, str(exc), "query rec") from None
        audit.append(s, _actor(link, request), VIEW, att.id, {"link_id": link.id, "ip": request.remote})
        return data, link.expires_at.strftime("%d.%m.%Y %H:%M")

    data, until = await db_run(request, q)
    if data.rendition_pending:
        request.app[RENDITIONS].kick()
    cfg = request.app[CONFIG]
    context = attempt_view.context(data, lang, f"/review/{token}/recordings", until,
                                   centre=centre_of(cfg) | {"timezone": cfg.timezone})
    return render(request, attempt_view.TEMPLATE, context)


@routes.get("/review/{token}/recordings/{key}/{track}", allow_head=False)
@requires(PUBLIC)
async def track(request: web.Request) -> web.StreamResponse:
    """One track as a playable MP4 (its init file then its media fragments), with byte ranges for seeking."""
    token = request.match_info["token"]
    key, track_id = path_ident(request, "key", CODE_RE), path_ident(request, "track", CODE_RE)

    def q(s: Session) -> list[track_file.Piece]:
        link = _link(s, token)
        rec = s.scalar(select(Recording).where(Recording.key == key, Recording.attempt_id == link.attempt_id))
        if rec is None:
            raise ApiError(404, "no such recording for this attempt", "URL key")
        pieces = (track_file.rendition_pieces if request.query.get("rendition") == "1" else track_file.track_pieces)(
            s, rec, track_id)
        details = {"link_id": link.id, "track": track_id, "range": request.headers.get("Range", "")[:100]}
        audit.append(s, _actor(link, request), MEDIA, key, details)
        return pieces

    return await track_file.send_track(request, await db_run(request, q))
