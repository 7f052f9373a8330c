"""Time-limited links for an appeal reviewer: one attempt's video and marks together, nothing else.

An admin issues a link (reviewer's name, minutes valid); the token is random, shown once, stored as its
SHA-256. The page and its video need no account, only an unexpired, unrevoked token; every issue, view,
video request and revocation is audited. Registered through routes/archive.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import html
import re
import secrets
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from ..app import STORAGE, ApiError, db_run, identity
from ..models import Attempt, Candidate, Fragment, Recording, ReviewLink, Station
from ..roles import PUBLIC, requires
from ..scores import attempt_outcome
from ..storage import NotFound
from ..validate import CODE_RE, Fields, path_ident, path_int, read_json

TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")
ISSUE, VIEW, MEDIA, REVOKE = "review_link.issue", "review_link.view", "review_link.media", "review_link.revoke"
MAX_MINUTES = 14 * 24 * 60
CHUNK = 256 * 1024


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@requires("review_links.manage")
async def issue(request: web.Request) -> web.Response:
    """Body {"reviewer": name, "minutes": N}: 201 with the link (shown once) and when it expires."""
    attempt_id = path_ident(request, "attempt_id")
    f = Fields(await read_json(request), allowed={"reviewer", "minutes"})
    reviewer, minutes = f.text("reviewer", max_len=200), f.integer("minutes", lo=1, hi=MAX_MINUTES)
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


@requires(PUBLIC)
async def page(request: web.Request) -> web.Response:
    """The attempt's video (one player per track) beside each examiner's marks."""
    token = request.match_info["token"]

    def q(s: Session) -> str:
        link = _link(s, token)
        att = s.get(Attempt, link.attempt_id)
        assert att is not None
        cand = s.get(Candidate, att.candidate_id) if att.candidate_id else None
        station = s.get(Station, att.station_id)
        recs = s.scalars(select(Recording).where(Recording.attempt_id == att.id).order_by(Recording.key)).all()
        out = attempt_outcome(s, att.id)
        audit.append(s, _actor(link, request), VIEW, att.id, {"link_id": link.id, "ip": request.remote})
        return _html(
            token,
            att.id,
            cand.accreditation_number if cand else "—",
            station.code if station else "—",
            link.expires_at,
            recs,
            out,
        )

    return web.Response(text=await db_run(request, q), content_type="text/html")


def _html(token: str, attempt_id: str, number: str, station: str, expires: dt.datetime, recs: Any, out: Any) -> str:
    e = html.escape
    videos = []
    for rec in recs:
        for track in sorted({f.track for f in rec.fragments}):
            src = f"/review/{token}/recordings/{e(rec.key)}/{e(track)}"
            videos.append(
                f'<figure><video controls preload="metadata" src="{src}"></video>'
                f"<figcaption>{e(rec.key)} / {e(track)}</figcaption></figure>"
            )
    sheets = []
    cl = out.checklist
    for examiner, sheet in sorted(out.sheets.items()):
        rows = []
        for n in cl.item_numbers if cl else sorted(sheet.marks):
            mark = {True: "да", False: "нет"}.get(sheet.marks.get(n), "—")  # type: ignore[arg-type]
            rows.append(f"<tr><td>{n}</td><td>{e(cl.item(n).action if cl else '')}</td><td>{mark}</td></tr>")
        sc = out.scores.get(examiner)
        total = f"{sc.percent:.1f} % ({sc.done} из {sc.total})" if sc else e(out.note)
        signed = "подписан" if sheet.finalised else "не подписан"
        corr = "".join(f"<li>пункт {c.item}: {e(c.reason or '')}</li>" for c in sheet.corrections)
        sheets.append(
            f"<h2>{e(examiner)}: {total}, лист {signed}</h2><table><tr><th>№</th><th>Действие</th>"
            f"<th>Отметка</th></tr>{''.join(rows)}</table><ul>{corr}</ul>"
        )
    return (
        '<!doctype html><html lang="ru"><head><meta charset="utf-8"><title>Апелляция: попытка '
        f"{e(attempt_id)}</title><style>body{{font-family:sans-serif;display:flex;gap:2em}}video{{max-width:48vw}}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}</style></head><body>"
        f"<section>{''.join(videos) or '<p>Записи нет.</p>'}</section><section><h1>Аккредитуемый {e(number)}, "
        f"станция {e(station)}</h1><p>Ссылка действует до {expires.strftime('%d.%m.%Y %H:%M')} UTC.</p>"
        f"<p>Результат: {e(out.result or out.note)}</p>{''.join(sheets)}</section></body></html>"
    )


@requires(PUBLIC)
async def track(request: web.Request) -> web.StreamResponse:
    """One track as a playable MP4: its init file then its media fragments, streamed from storage."""
    token = request.match_info["token"]
    key, track_id = path_ident(request, "key", CODE_RE), path_ident(request, "track", CODE_RE)

    def q(s: Session) -> list[tuple[str, int]]:
        link = _link(s, token)
        rec = s.scalar(select(Recording).where(Recording.key == key, Recording.attempt_id == link.attempt_id))
        if rec is None:
            raise ApiError(404, "no such recording for this attempt", "URL key")
        frags = s.scalars(
            select(Fragment).where(Fragment.recording_id == rec.id, Fragment.track == track_id).order_by(Fragment.seq)
        ).all()
        if not frags:
            raise ApiError(404, "no such track", "URL track")
        audit.append(s, _actor(link, request), MEDIA, key, {"link_id": link.id, "track": track_id})
        return [(f.sha256, f.size) for f in frags]

    parts = await db_run(request, q)
    storage = request.app[STORAGE]
    resp = web.StreamResponse(headers={"Content-Type": "video/mp4", "Cache-Control": "no-store"})
    resp.content_length = sum(size for _, size in parts)
    await resp.prepare(request)
    for sha, _size in parts:
        try:
            fh = await asyncio.to_thread(storage.open, sha)
        except NotFound:
            break  # destroyed by retention meanwhile: the response ends short
        try:
            while chunk := await asyncio.to_thread(fh.read, CHUNK):
                await resp.write(chunk)
        finally:
            fh.close()
    await resp.write_eof()
    return resp


ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/api/attempts/{attempt_id}/review-links", issue),
    ("DELETE", "/api/review-links/{link_id}", revoke),
    ("GET", "/review/{token}", page),
    ("GET", "/review/{token}/recordings/{key}/{track}", track),
]
