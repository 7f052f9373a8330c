"""Examiners' tablet credentials: issued here, synced to the station as its roster, checked on every mark.

The design (the format and crypto: checklists/examiner_keys.py):
- An admin issues a credential per examiner, station and exam day (`osce server tablet issue`, or
  ``POST /api/stations/{code}/tablet-credentials``): only for an active examiner assigned to that station for that
  day (or for every day). The server draws the PIN (`tablet_pin_digits`, at least 6) and shows it once; it keeps
  the roster entry (signing key wrapped under the PIN) and the public key. A new credential for the same
  examiner, station and day replaces the old one in the roster.
- The station fetches its roster (``GET /api/stations/{code}/roster``) and keeps it, so that examiners sign in on
  the tablet offline; a credential is good from the start of its exam day to its end (the centre's `timezone`).
- Every mark event a station uploads carries a proof: the signature of the event by the named examiner's key.
  `check_station_event` accepts it only if the proof's credential belongs to this station and to the examiner the
  event names, is not revoked, its examiner is still active and assigned, the attempt (if scheduled) is on the
  credential's day, and the signature is right. Anything else is refused; one audit row per burst per station.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from checklists import examiner_keys
from checklists.marks import MarkEvent as WireEvent

from . import audit
from .config import ServerConfig
from .models import Attempt, ExamDay, ExaminerAssignment, Station, TabletCredential, User, utcnow
from .roles import Role

TABLET_ISSUE = "tablet.issue"
TABLET_REVOKE = "tablet.revoke"
MARKS_REFUSED = "marks.refused"
MARKS_UNSIGNED = "marks.unsigned_accepted"


class CredentialError(ValueError):
    """A credential cannot be issued or found; the message says why, `where` names the input."""

    def __init__(self, message: str, where: str, status: int = 422) -> None:
        super().__init__(message)
        self.where, self.status = where, status


def day_window(day: dt.date, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """The exam day from its local midnight to the next, in UTC."""
    tz = zoneinfo.ZoneInfo(timezone)
    start = dt.datetime.combine(day, dt.time(0), tz)
    return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


def _days_on(s: Session, day: dt.date) -> list[int]:
    return list(s.scalars(select(ExamDay.id).where(ExamDay.day == day).order_by(ExamDay.id)))


def _assigned(s: Session, user_id: int, station_id: int, day_ids: list[int]) -> bool:
    q = select(ExaminerAssignment.id).where(
        ExaminerAssignment.user_id == user_id, ExaminerAssignment.station_id == station_id,
        or_(ExaminerAssignment.exam_day_id.is_(None), ExaminerAssignment.exam_day_id.in_(day_ids)))
    return s.scalar(q.limit(1)) is not None


def issue(s: Session, cfg: ServerConfig, station_code: str, day: dt.date, login: str,
          actor: str) -> tuple[str, TabletCredential]:
    """(PIN, credential) for an examiner at a station on an exam day; audited. The PIN is not kept."""
    station = s.scalar(select(Station).where(Station.code == station_code))
    if station is None:
        raise CredentialError(f"no station {station_code!r}", "station", 404)
    day_ids = _days_on(s, day)
    if not day_ids:
        raise CredentialError(f"no exam day on {day.isoformat()} (import the day's schedule first)", "day")
    user = s.scalar(select(User).where(User.login == login))
    if user is None or not user.active or user.role != Role.EXAMINER:
        raise CredentialError(f"{login!r} is not an active examiner", "login")
    if not _assigned(s, user.id, station.id, day_ids):
        raise CredentialError(f"{login!r} is not assigned to station {station_code} on {day.isoformat()}", "login")
    now = utcnow()
    s.execute(update(TabletCredential).where(
        TabletCredential.user_id == user.id, TabletCredential.station_id == station.id,
        TabletCredential.exam_day_id.in_(day_ids), TabletCredential.replaced_at.is_(None),
    ).values(replaced_at=now))
    start, end = day_window(day, cfg.timezone)
    pin = examiner_keys.new_pin(cfg.tablet_pin_digits)
    entry = examiner_keys.issue(login, station.code, day.isoformat(), _iso(start), _iso(end), pin,
                                cfg.argon2_time_cost, cfg.argon2_memory_kib, cfg.argon2_parallelism)
    row = TabletCredential(key_id=entry.key_id, user_id=user.id, station_id=station.id, exam_day_id=day_ids[0],
                           public_key=entry.public_key, roster_entry=json.dumps(entry.to_json()),
                           valid_from=start, valid_until=end, created_by=actor)
    s.add(row)
    s.flush()
    audit.append(s, actor, TABLET_ISSUE, station.code,
                 {"login": login, "day": day.isoformat(), "key_id": entry.key_id})
    return pin, row


def issue_for_assigned(s: Session, cfg: ServerConfig, station_code: str, day: dt.date,
                       actor: str) -> list[tuple[str, str, TabletCredential]]:
    """A credential for every active examiner assigned to the station on the day: [(login, PIN, credential)]."""
    station = s.scalar(select(Station).where(Station.code == station_code))
    if station is None:
        raise CredentialError(f"no station {station_code!r}", "station", 404)
    day_ids = _days_on(s, day)
    logins = s.scalars(select(User.login).join(ExaminerAssignment, ExaminerAssignment.user_id == User.id).where(
        ExaminerAssignment.station_id == station.id, User.active.is_(True), User.role == Role.EXAMINER,
        or_(ExaminerAssignment.exam_day_id.is_(None), ExaminerAssignment.exam_day_id.in_(day_ids)),
    ).distinct().order_by(User.login))
    return [(login, *issue(s, cfg, station_code, day, login, actor)) for login in list(logins)]


def revoke(s: Session, key_id: str, actor: str) -> TabletCredential:
    row = s.scalar(select(TabletCredential).where(TabletCredential.key_id == key_id))
    if row is None:
        raise CredentialError(f"no tablet credential {key_id!r}", "key_id", 404)
    if row.revoked_at is None:
        row.revoked_at, row.revoked_by = utcnow(), actor
        audit.append(s, actor, TABLET_REVOKE, s.get(Station, row.station_id).code,  # type: ignore[union-attr]
                     {"key_id": key_id, "login": s.get(User, row.user_id).login})  # type: ignore[union-attr]
    return row


def describe(s: Session, row: TabletCredential) -> dict[str, Any]:
    """A credential as listed to an admin (never the PIN: it is kept nowhere)."""
    user, day = s.get(User, row.user_id), s.get(ExamDay, row.exam_day_id)
    return {"key_id": row.key_id, "login": user.login if user else None, "day": day.day.isoformat() if day else None,
            "valid_from": _iso(row.valid_from), "valid_until": _iso(row.valid_until),
            "state": "revoked" if row.revoked_at else "replaced" if row.replaced_at else "active"}


def listed(s: Session, station_id: int) -> list[dict[str, Any]]:
    rows = s.scalars(select(TabletCredential).where(TabletCredential.station_id == station_id)
                     .order_by(TabletCredential.id))
    return [describe(s, r) for r in rows]


def roster(s: Session, station_id: int) -> list[dict[str, Any]]:
    """The station's roster: credentials in force or to come (not replaced, revoked or over), whose examiner is
    still active and assigned."""
    rows = s.execute(select(TabletCredential, User, ExamDay)
                     .join(User, User.id == TabletCredential.user_id)
                     .join(ExamDay, ExamDay.id == TabletCredential.exam_day_id)
                     .where(TabletCredential.station_id == station_id, TabletCredential.replaced_at.is_(None),
                            TabletCredential.revoked_at.is_(None), TabletCredential.valid_until > utcnow(),
                            User.active.is_(True))
                     .order_by(User.login)).all()
    return [json.loads(cred.roster_entry) for cred, user, day in rows
            if _assigned(s, user.id, station_id, _days_on(s, day.day))]


# --- checking a station's marks --------------------------------------------------------------------------


@dataclass
class MarkCheck:
    """Checks a batch of a station's events; keeps what it looked up for the batch."""

    s: Session
    station: Station
    accept_unsigned: bool = False
    _creds: dict[str, tuple[TabletCredential, User, ExamDay] | None] = field(default_factory=dict)
    unsigned: list[str] = field(default_factory=list)  # events accepted without a proof (upgrade mode)

    def _cred(self, key_id: str) -> tuple[TabletCredential, User, ExamDay] | None:
        if key_id not in self._creds:
            row = self.s.execute(select(TabletCredential, User, ExamDay)
                                 .join(User, User.id == TabletCredential.user_id)
                                 .join(ExamDay, ExamDay.id == TabletCredential.exam_day_id)
                                 .where(TabletCredential.key_id == key_id)).first()
            self._creds[key_id] = None if row is None else (row[0], row[1], row[2])
        return self._creds[key_id]

    def refusal(self, event: WireEvent, proof: Any) -> str | None:
        """Why this event is refused, or None if the named examiner really signed it."""
        if proof is None:
            if self.accept_unsigned and self._examiner_assigned(event):
                self.unsigned.append(event.event_id)
                return None
            return "no proof: a station's mark must be signed by the examiner's tablet key"
        try:
            key_id, signature = examiner_keys.parse_proof(proof)
        except ValueError as exc:
            return f"proof: {exc}"
        found = self._cred(key_id)
        if found is None:
            return f"unknown tablet credential {key_id}"
        cred, user, day = found
        if cred.station_id != self.station.id:
            return f"credential {key_id} belongs to another station"
        if user.login != event.examiner:
            return f"credential {key_id} is {user.login!r}'s, the event names {event.examiner!r}"
        if cred.revoked_at is not None:
            return f"credential {key_id} was revoked"
        if not user.active or user.role != Role.EXAMINER:
            return f"examiner {user.login!r} is not an active examiner"
        if not _assigned(self.s, user.id, self.station.id, _days_on(self.s, day.day)):
            return f"examiner {user.login!r} is not assigned to station {self.station.code} on {day.day}"
        attempt = self.s.get(Attempt, event.attempt_id)
        if attempt is not None and attempt.exam_day_id is not None:
            attempt_day = self.s.get(ExamDay, attempt.exam_day_id)
            if attempt_day is not None and attempt_day.day != day.day:
                return f"credential {key_id} is for {day.day}, the attempt is on {attempt_day.day}"
        if not examiner_keys.verify(cred.public_key, signature, event):
            return "the signature does not match the event"
        return None

    def _examiner_assigned(self, event: WireEvent) -> bool:
        user = self.s.scalar(select(User).where(User.login == event.examiner))
        if user is None or not user.active or user.role != Role.EXAMINER:
            return False
        attempt = self.s.get(Attempt, event.attempt_id)
        day_ids = [] if attempt is None or attempt.exam_day_id is None else [attempt.exam_day_id]
        return _assigned(self.s, user.id, self.station.id, day_ids)
