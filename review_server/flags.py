"""Flags: what an observer or examiner saw on a station's live picture and flagged (the state-exam video rules:
online observers flag violations while watching, and every flag is kept with the recording). The rules here, no
web framework: the kinds, making one (the moment seen, on the server's clock), withdrawing one (its author, with a
reason; never deleted), the lists (an attempt's, a day's), where one sits on a recording's timeline, and the rows
the protocol and the export package carry. The HTTP side is routes/flags.py.

The moment: the live player shows the station's recording-clock time (media/live.py stamps each chunk with it and
the fMP4 keeps the recorder's own timestamps), so the page sends that `media_t`. The server knows when the newest
chunk of that picture arrived and its time; the moment seen is that arrival, less how far behind it the viewer was
(`at`). On the attempt page a flag is placed on a recording at `media_t` when that is the part it was made on
(`at` and the part's `media_from` agree within PART_MATCH_S), else at `at` − `media_from` (another part of the
attempt, cut by a restart), else (no `media_from`) at `media_t`.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .models import Attempt, Candidate, Flag, Recording, Station, utcnow

KINDS = ("prompt", "outsider", "disorder", "technical", "other")  # подсказка, посторонний, нарушение, техника, другое
TEXT_MAX = 300
REASON_MAX = 500
MAX_BEHIND_S = 60.0  # a live viewer is never further behind the newest chunk than this (the player keeps ~30 s)
MAX_AHEAD_S = 2.0  # nor ahead of it by more than a chunk or two in flight
PART_MATCH_S = 5.0  # `at` and a part's media_from + media_t agree this well on the part a flag was made on

FLAG_ADD = "flag.add"  # audit actions
FLAG_WITHDRAW = "flag.withdraw"


class FlagError(Exception):
    """A flag refused: status, what, where (routes/flags.py turns it into an ApiError)."""

    def __init__(self, status: int, error: str, where: str) -> None:
        super().__init__(error)
        self.status, self.error, self.where = status, error, where


def moment_seen(media_t: float, edge_t: float, edge_at: dt.datetime) -> dt.datetime:
    """When the picture at `media_t` was live, given the newest chunk (`edge_t`) arrived at `edge_at`; refused when
    `media_t` is further from that edge than a live viewer can be."""
    behind = edge_t - media_t
    if not -MAX_AHEAD_S <= behind <= MAX_BEHIND_S:
        raise FlagError(422, f"the live picture's time {media_t:.3f} s is not within {MAX_BEHIND_S:.0f} s before "
                        f"the station's newest ({edge_t:.3f} s)", "media_t")
    return edge_at - dt.timedelta(seconds=behind)


def add(s: Session, *, station: Station, attempt_id: str | None, camera: str | None, media_t: float | None,
        at: dt.datetime, kind: str, text: str | None, actor: str, ip: str | None) -> Flag:
    flag = Flag(station_id=station.id, attempt_id=attempt_id, camera=camera, media_t=media_t, at=at, kind=kind,
                text=text, author=actor)
    s.add(flag)
    s.flush()
    audit.append(s, actor, FLAG_ADD, f"flag:{flag.id}", {
        "station": station.code, "attempt_id": attempt_id, "kind": kind, "text": text, "camera": camera,
        "media_t": media_t, "at": _iso(at), "ip": ip})
    return flag


def withdraw(s: Session, flag_id: int, actor: str, reason: str, ip: str | None) -> Flag:
    """Its author withdraws it with a reason (kept, shown struck through); anyone else is refused."""
    flag = s.get(Flag, flag_id, with_for_update=True)  # a second withdrawal at once waits, then finds it withdrawn
    if flag is None:
        raise FlagError(404, f"no flag {flag_id}", "URL flag_id")
    if flag.author != actor:
        raise FlagError(403, "only the flag's author may withdraw it", "URL flag_id")
    if flag.withdrawn_at is not None:
        raise FlagError(409, "the flag is already withdrawn", "URL flag_id")
    flag.withdrawn_at, flag.withdrawn_by, flag.withdraw_reason = utcnow(), actor, reason
    audit.append(s, actor, FLAG_WITHDRAW, f"flag:{flag.id}", {"reason": reason, "attempt_id": flag.attempt_id,
                                                              "ip": ip})
    return flag


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_dict(flag: Flag, station_code: str, number: str | None = None) -> dict[str, Any]:
    """One flag as the API, the day list and the export package give it (accreditation number, never a name)."""
    return {"id": flag.id, "station": station_code, "attempt_id": flag.attempt_id, "candidate": number,
            "camera": flag.camera, "media_t": flag.media_t, "at": _iso(flag.at), "kind": flag.kind,
            "text": flag.text, "author": flag.author.removeprefix("user:"), "created_at": _iso(flag.created_at),
            "withdrawn": flag.withdrawn_at is not None, "withdrawn_at": _iso(flag.withdrawn_at),
            "withdrawn_by": flag.withdrawn_by.removeprefix("user:") if flag.withdrawn_by else None,
            "withdraw_reason": flag.withdraw_reason}


def of_attempt(s: Session, attempt_id: str) -> list[dict[str, Any]]:
    """An attempt's flags, in the order seen, withdrawn ones included."""
    rows = s.execute(select(Flag, Station.code).join(Station, Station.id == Flag.station_id)
                     .where(Flag.attempt_id == attempt_id).order_by(Flag.at, Flag.id)).all()
    att = s.get(Attempt, attempt_id)
    cand = s.get(Candidate, att.candidate_id) if att is not None and att.candidate_id else None
    number = cand.accreditation_number if cand else None
    return [as_dict(f, code, number) for f, code in rows]


def of_day(s: Session, day: dt.date, timezone: str, station_ids: set[int] | None = None,
           author: str | None = None) -> list[dict[str, Any]]:
    """The flags seen on a day (the centre's local day), by station and time; narrowed to some stations (an
    examiner's) or to one author (the observation room's "my flags")."""
    zone = zoneinfo.ZoneInfo(timezone)
    start = dt.datetime.combine(day, dt.time(0), zone).astimezone(dt.UTC)
    q = (select(Flag, Station.code, Candidate.accreditation_number)
         .join(Station, Station.id == Flag.station_id)
         .outerjoin(Attempt, Attempt.id == Flag.attempt_id)
         .outerjoin(Candidate, Candidate.id == Attempt.candidate_id)
         .where(Flag.at >= start, Flag.at < start + dt.timedelta(days=1)))
    if station_ids is not None:
        q = q.where(Flag.station_id.in_(station_ids))
    if author is not None:
        q = q.where(Flag.author == author)
    return [as_dict(f, code, number) for f, code, number in s.execute(q.order_by(Station.code, Flag.at, Flag.id))]


def place(flag: dict[str, Any], media_from: dt.datetime | None) -> float | None:
    """Where a flag sits on a recording's media clock whose time 0 was `media_from` (see the module's note)."""
    media_t = flag.get("media_t")
    if media_from is None:
        return media_t
    by_clock = (dt.datetime.fromisoformat(flag["at"]) - media_from).total_seconds()
    if media_t is not None and abs(by_clock - media_t) <= PART_MATCH_S:
        return float(media_t)
    return by_clock


@dataclass
class Placed:
    """A flag on the attempt page's timeline: the flag as as_dict gives it and its time on this recording."""

    flag: dict[str, Any]
    t: float | None


def on_recording(s: Session, attempt_id: str, rec: Recording | None) -> list[Placed]:
    return [Placed(f, place(f, rec.media_from if rec is not None else None)) for f in of_attempt(s, attempt_id)]


def note_lines(flags: list[dict[str, Any]], timezone: str) -> list[str]:
    """The protocol's notes: one line a flag, in Russian (the protocol's language), withdrawn ones marked."""
    zone = zoneinfo.ZoneInfo(timezone)
    out = []
    for f in flags:
        at = dt.datetime.fromisoformat(f["at"]).astimezone(zone).strftime("%H:%M:%S")
        what = f["text"] if f["kind"] == "other" else RU_KINDS[f["kind"]]
        line = f"{f['station']} {at}, {f['candidate'] or f['attempt_id'] or '—'}: {what} ({f['author']})"
        if f["withdrawn"]:
            line += f"; отозвана: {f['withdraw_reason']}"
        out.append(line)
    return out


RU_KINDS = {"prompt": "подсказка", "outsider": "посторонний в помещении", "disorder": "нарушение порядка",
            "technical": "техническая проблема", "other": "другое"}
