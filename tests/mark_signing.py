"""TEST HELPER: station mark events signed as the examiners' tablets sign them (checklists/examiner_keys.py).

A station's marks reach the server only with a proof by the named examiner's tablet key. Tests that post marks
as a station get the keys the real way: the credential is issued by the server's own code
(review_server/tablet_credentials.issue, as `osce server tablet issue` does) and unlocked with its PIN (as the
tablet sign-in does). What an admin would set up first is made on the way if missing: the examiner's account,
the examiner's assignment to the station, and an exam day for the credential (the attempt's own day when it is
scheduled, else today's).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from checklists import examiner_keys
from checklists.marks import WIRE_FIELDS, MarkEvent

Run = Callable[[Callable[[Any], Any]], Any]  # Database.run, or a stand's db()


def issue_key(run: Run, station: str, login: str, day: dt.date | None = None) -> tuple[str, Ed25519PrivateKey]:
    """(key_id, signing key) of a fresh credential for the examiner at the station on the day (default today)."""
    pin, entry = issue_pin(run, station, login, day)
    key = entry.unlock(pin)
    assert key is not None
    return entry.key_id, key


def issue_pin(run: Run, station: str, login: str,
              day: dt.date | None = None) -> tuple[str, examiner_keys.RosterEntry]:
    """(PIN, roster entry) of a fresh credential, as `osce server tablet issue` makes it; the account, the
    assignment and the exam day are made first if missing."""
    from sqlalchemy import select

    from review_server import auth
    from review_server.config import ServerConfig
    from review_server.models import ExamDay, ExaminerAssignment, Station, User
    from review_server.tablet_credentials import issue

    day = day or dt.date.today()
    cfg = ServerConfig(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)  # TEST-ONLY cost

    def make(s: Any) -> tuple[str, str]:
        station_row = s.scalar(select(Station).where(Station.code == station))
        user = s.scalar(select(User).where(User.login == login))
        if user is None:
            user = auth.add_user(s, login, secrets.token_urlsafe(16), "examiner")
        if s.scalar(select(ExamDay.id).where(ExamDay.day == day)) is None:
            s.add(ExamDay(day=day, title="test: tablet credentials"))
            s.flush()
        if s.scalar(select(ExaminerAssignment.id).where(
                ExaminerAssignment.user_id == user.id, ExaminerAssignment.station_id == station_row.id,
                ExaminerAssignment.exam_day_id.is_(None))) is None:
            s.add(ExaminerAssignment(user_id=user.id, station_id=station_row.id, exam_day_id=None))
            s.flush()
        pin, row = issue(s, cfg, station, day, login, "test")
        return pin, row.roster_entry

    import json

    pin, entry_json = run(make)
    return pin, examiner_keys.RosterEntry.from_json(json.loads(entry_json))


class Signer:
    """Signs a station's events with each examiner's key (one credential per station, examiner and day)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.keys: dict[tuple[str, str, dt.date], tuple[str, Ed25519PrivateKey]] = {}

    def _day(self, attempt_id: str) -> dt.date:
        from review_server.models import Attempt, ExamDay

        def find(s: Any) -> dt.date | None:
            att = s.get(Attempt, attempt_id)
            day = s.get(ExamDay, att.exam_day_id) if att is not None and att.exam_day_id is not None else None
            return None if day is None else day.day

        return self.run(find) or dt.date.today()

    def sign(self, station: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for ev in events:
            try:
                event = MarkEvent.from_json({k: ev[k] for k in WIRE_FIELDS})
            except (KeyError, ValueError, TypeError):
                out.append(ev)  # not an event the format accepts: sent as it is, for the server to refuse
                continue
            try:
                where = (station, event.examiner, self._day(event.attempt_id))
                if where not in self.keys:
                    self.keys[where] = issue_key(self.run, station, event.examiner, where[2])
                key_id, key = self.keys[where]
                proof = examiner_keys.sign(key, key_id, event)
            except Exception:  # noqa: BLE001 - no such station, a name no account can have, an id no table can hold
                out.append(ev)  # sent unsigned: the server refuses it for what is wrong with it
                continue
            out.append({**ev, "proof": proof})
        return out
