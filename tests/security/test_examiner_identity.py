"""Identity from client-filled fields: who marked, and when, must come from who signed in, never from a field the
client fills in.

Issue 16, case 2: a stolen room-PC token wrote marks as a real server login and sent `finalise`/`reopen`. Now a
station's mark counts only with a proof by the named examiner's tablet key (checklists/examiner_keys.py). The
keys here are got as an agent gets them: an admin issues the credential over the API (the PIN, shown once), the
station reads its roster with its token, and the PIN unwraps the key. Also: the server's own pages stamp when
(wall_time, recording_offset_s) and the order (seq) of a mark; a station's health event cannot name another
station's attempt."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from checklists import examiner_keys
from checklists.marks import WIRE_FIELDS, MarkEvent

from .conftest import SCHEDULE_DAY, Stand, mark_event

CATEGORY = "identity from client-filled fields"


def _today() -> str:
    """The exam day of the stand's scheduled attempts (conftest.SCHEDULE_DAY): a credential signs only for
    attempts of its own day."""
    return SCHEDULE_DAY[:10]


def _examiner_key(stand: Stand, station: str, login: str) -> tuple[str, Any]:
    """(key_id, key) the way an agent gets them: issued by an admin, read from the roster, unwrapped by the PIN."""
    admin = stand.user("admin")
    stand.json_request("POST", "/api/exam-days", {"day": _today(), "title": "security"}, admin)
    issued = stand.json_request("POST", f"/api/stations/{station}/tablet-credentials", {"day": _today(),
                                                                                         "login": login}, admin)
    assert issued.status == 201, issued.body
    cred = issued.json()["credentials"][0]
    roster = stand.request("GET", f"/api/stations/{station}/roster", stand.station(station))
    assert roster.status == 200 and cred["pin"] not in roster.body.decode()  # the PIN is kept nowhere
    entry = next(examiner_keys.RosterEntry.from_json(e) for e in roster.json()["examiners"]
                 if e["key_id"] == cred["key_id"])
    assert entry.unlock("000000" if cred["pin"] != "000000" else "111111") is None
    key = entry.unlock(cred["pin"])
    assert key is not None
    return cred["key_id"], key


def _signed(event: dict[str, Any], key_id: str, key: Any) -> dict[str, Any]:
    wire = MarkEvent.from_json({k: event[k] for k in WIRE_FIELDS})
    return {**event, "proof": examiner_keys.sign(key, key_id, wire)}


def _stored(stand: Stand, event_id: str) -> bool:
    from sqlalchemy import select

    from review_server.models import MarkEvent as Row

    return stand.db(lambda s: s.scalar(select(Row.id).where(Row.event_id == event_id))) is not None


def _attempt_exists(stand: Stand, attempt: str) -> bool:
    from review_server.models import Attempt

    return stand.db(lambda s: s.get(Attempt, attempt)) is not None


def _refused(stand: Stand, station: str, events: list[dict[str, Any]], why: str) -> None:
    reply = stand.post_marks(station, events, sign=False)
    assert reply.status == 403, (reply.status, reply.body)
    assert reply.json()["where"].endswith(".proof") and why in reply.error, reply.error
    assert not any(_stored(stand, e["event_id"]) for e in events)


@pytest.mark.parametrize("kind", ["mark", "finalise", "reopen"])
def test_a_station_token_alone_cannot_mark_or_sign_in_an_examiners_name(stand: Stand, kind: str) -> None:
    """Case 2 of issue 16: the examiner field was free text behind a station token."""
    attempt = f"forged-{kind}"
    extra = {"mark": {}, "finalise": {"item": None, "done": None},
             "reopen": {"item": None, "done": None, "reason": "reopened by a thief"}}[kind]
    event = {**mark_event(attempt, "S1", 1, kind=kind), **extra}
    _refused(stand, "S1", [event], "no proof")
    assert not _attempt_exists(stand, attempt)  # nothing was created either


def test_one_examiners_key_does_not_sign_for_another(stand: Stand) -> None:
    key_id, key = _examiner_key(stand, "S1", "examiner")
    posing = mark_event("att-s1", "S1", 7, examiner="examiner2")
    _refused(stand, "S1", [_signed(posing, key_id, key)], "the event names 'examiner2'")


def test_a_signature_does_not_carry_over_to_a_changed_event(stand: Stand) -> None:
    key_id, key = _examiner_key(stand, "S1", "examiner")
    signed = _signed(mark_event("att-s1", "S1", 8), key_id, key)
    for field, value in (("done", False), ("item", 9), ("attempt_id", "att-other"), ("seq", 99),
                         ("wall_time", "2026-06-01T08:00:00+00:00")):
        _refused(stand, "S1", [{**signed, field: value, "event_id": str(uuid.uuid4())}], "signature")


def test_another_stations_credential_is_refused(stand: Stand) -> None:
    """examiner2's S2 key on S1's token (a thief holding S1's token and S2's roster)."""
    key_id, key = _examiner_key(stand, "S2", "examiner2")
    event = mark_event("att-s1", "S1", 6, examiner="examiner2")
    _refused(stand, "S1", [_signed(event, key_id, key)], "another station")


def test_unknown_revoked_and_disabled_credentials_sign_nothing(stand: Stand, new_station: Any) -> None:
    code, _token, _ = new_station()
    stand.schedule(code, f"att-{code}")
    admin = stand.user("admin")
    stand.json_request("POST", "/api/users", {"login": f"ex{code.lower()}", "password": "correct horse battery",
                                              "role": "examiner"}, admin)
    login = f"ex{code.lower()}"
    assert stand.json_request("POST", "/api/assignments", {"login": login, "station": code}, admin).status == 201
    key_id, key = _examiner_key(stand, code, login)
    ok = _signed(mark_event(f"att-{code}", code, 1, examiner=login), key_id, key)
    assert stand.post_marks(code, [ok], sign=False).status == 200
    unknown = _signed(mark_event(f"att-{code}", code, 2, examiner=login), "0" * 32, key)
    _refused(stand, code, [unknown], "unknown tablet credential")
    assert stand.request("DELETE", f"/api/tablet-credentials/{key_id}", admin, b"").status == 200
    _refused(stand, code, [_signed(mark_event(f"att-{code}", code, 3, examiner=login), key_id, key)], "revoked")
    key_id, key = _examiner_key(stand, code, login)  # a new credential, then the account is disabled
    assert stand.request("DELETE", f"/api/users/{login}", admin, b"").status == 200
    _refused(stand, code, [_signed(mark_event(f"att-{code}", code, 4, examiner=login), key_id, key)],
             "not an active examiner")


def test_credentials_go_only_to_examiners_assigned_to_the_station(stand: Stand) -> None:
    admin = stand.user("admin")
    stand.json_request("POST", "/api/exam-days", {"day": _today(), "title": "security"}, admin)
    for login, station in (("observer", "S1"), ("examiner2", "S1"), ("nobody", "S1")):
        reply = stand.json_request("POST", f"/api/stations/{station}/tablet-credentials",
                                   {"day": _today(), "login": login}, admin)
        assert reply.status == 422 and reply.json()["where"] == "login", (login, reply.body)
    theirs = stand.request("GET", "/api/stations/S1/roster", stand.station("S2"))
    assert theirs.status == 403  # a station reads only its own roster


def test_forged_marks_are_audited_once_per_burst(stand: Stand, new_station: Any) -> None:
    """Each refusal is counted, and the audit log gets one row for the burst, not one per forged request."""
    from sqlalchemy import func, select

    from review_server.models import AuditEvent
    from review_server.throttle import burst_count

    code, _token, _ = new_station()

    def refused_rows() -> int:
        return stand.db(lambda s: s.scalar(select(func.count()).where(AuditEvent.action == "marks.refused",
                                                                      AuditEvent.actor == f"station:{code}")))

    for i in range(40):
        assert stand.post_marks(code, [mark_event(f"att-{code}", code, 1 + i % 9)], sign=False).status == 403
    assert refused_rows() == 1
    assert stand.db(lambda s: burst_count(s, f"marks-refused:{code}")) == 40


def test_the_server_page_stamps_when_and_in_which_order(stand: Stand) -> None:
    """`also` of issue 16: marks from the server's pages took wall_time and recording_offset_s from the page, so
    an examiner could backdate them (and seq, to order them before others)."""
    body = {"event_id": str(uuid.uuid4()), "kind": "mark", "item": 5, "done": False, "reason": "видео",
            "checklist_hash": "c" * 64, "wall_time": "2020-01-01T00:00:00+00:00", "recording_offset_s": 0.5,
            "seq": 0}
    before = dt.datetime.now(dt.UTC)
    reply = stand.json_request("POST", "/api/attempts/att-s1/marks", body, stand.user("examiner"))
    assert reply.status == 200, reply.body
    events = stand.request("GET", "/api/attempts/att-s1/marks", stand.user("archivist")).json()["events"]
    mine = next(e for e in events if e["event_id"] == body["event_id"])
    when = dt.datetime.fromisoformat(mine["wall_time"])
    assert before - dt.timedelta(seconds=5) <= when <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert mine["seq"] > max(e["seq"] for e in events if e["examiner"] == "examiner" and e is not mine)
    assert mine["recording_offset_s"] != 0.5
    again = stand.json_request("POST", "/api/attempts/att-s1/marks", body, stand.user("examiner"))
    assert again.status == 200 and again.json()["duplicates"] == [body["event_id"]]  # a retry stays one mark


def test_a_health_event_cannot_name_another_stations_attempt(stand: Stand) -> None:
    event = {"id": str(uuid.uuid4()), "code": "camera_lost", "text": "камера 1 потеряна", "attempt_id": "att-s1",
             "started_at": "2026-06-01T09:30:00Z"}
    reply = stand.json_request("PUT", "/api/stations/S2/health-events", {"events": [event]}, stand.station("S2"))
    assert reply.status == 409 and reply.json()["where"] == "events[0].attempt_id", reply.body
