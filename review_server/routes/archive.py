"""Archive: search by accreditation number, export of one attempt (audited). The rest of the archive has its
own modules: export requests and packages (routes/exports.py), protocols and checklist versions
(routes/protocols.py), the search across days (routes/search.py), retention and legal holds
(routes/retention.py), appeal review links (routes/review_links.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from checklists.marks import WIRE_FIELDS

from .. import audit
from ..models import Attempt, Candidate, MarkEvent, Recording, Station
from ..roles import requires
from ..validate import ACCRED_RE, path_ident
from ..web import ApiError, db_run, identity

routes = web.RouteTableDef()


@routes.get("/api/archive/search", allow_head=False)
@requires("archive.search")
async def search(request: web.Request) -> web.Response:
    """?number=ACCREDITATION_NUMBER → that candidate's attempts and recordings."""
    number = request.query.get("number", "")
    if not ACCRED_RE.fullmatch(number):
        raise ApiError(400, f"number must match {ACCRED_RE.pattern}", "query number")

    def q(s: Session) -> list[dict[str, Any]]:
        cand = s.scalar(select(Candidate).where(Candidate.accreditation_number == number))
        if cand is None:
            return []
        out = []
        for att in s.scalars(select(Attempt).where(Attempt.candidate_id == cand.id).order_by(Attempt.created_at)):
            recs = s.scalars(select(Recording.key).where(Recording.attempt_id == att.id)).all()
            station = s.get(Station, att.station_id)
            out.append({"attempt_id": att.id, "station": station.code if station else None, "recordings": recs})
        return out

    return web.json_response({"accreditation_number": number, "attempts": await db_run(request, q)})


@routes.get("/api/archive/attempts/{attempt_id}/export", allow_head=False)
@requires("archive.export")
async def export_attempt(request: web.Request) -> web.Response:
    """One attempt as a JSON bundle: mark events and the hashes of its recordings' fragments."""
    attempt_id = path_ident(request, "attempt_id")
    who = identity(request)

    def q(s: Session) -> dict[str, Any]:
        att = s.get(Attempt, attempt_id)
        if att is None:
            raise ApiError(404, f"no attempt {attempt_id!r}", "URL attempt_id")
        cand = s.get(Candidate, att.candidate_id) if att.candidate_id else None
        station = s.get(Station, att.station_id)
        events = s.scalars(select(MarkEvent).where(MarkEvent.attempt_id == attempt_id).order_by(MarkEvent.id))
        recs = s.scalars(select(Recording).where(Recording.attempt_id == attempt_id).order_by(Recording.id))
        bundle: dict[str, Any] = {
            "attempt_id": att.id,
            "station": station.code if station else None,
            "accreditation_number": cand.accreditation_number if cand else None,
            "mark_events": [
                {
                    c: getattr(e, c)
                    for c in WIRE_FIELDS
                    if c not in ("attempt_id", "station_id")
                }
                for e in events
            ],
            "recordings": [
                {
                    "key": r.key,
                    "fragments": [
                        {
                            "track": f.track,
                            "kind": f.kind,
                            "seq": f.seq,
                            "sha256": f.sha256,
                            "size": f.size,
                            "start_s": f.start_s,
                            "end_s": f.end_s,
                        }
                        for f in r.fragments
                    ],
                }
                for r in recs
            ],
        }
        audit.append(
            s,
            who.actor,
            audit.EXPORT,
            attempt_id,
            {"events": len(bundle["mark_events"]), "recordings": len(bundle["recordings"])},
        )
        return bundle

    return web.json_response(await db_run(request, q))

