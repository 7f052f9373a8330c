"""Evidence lost or rewritten: a legal hold (an appeal, a request from the Ministry) must stop everything that
would delete or rewrite what it covers, whichever way it comes: the admin's delete route, a station re-sending
its CPR report, a re-import of the day's schedule. Each refusal names the hold and is itself audited; the
evidence reads back unchanged afterwards. Every case runs on a fresh station and attempt of its own."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from .conftest import SCHEDULE_DAY, Stand, encode_fmp4

CATEGORY = "evidence lost or rewritten"

REPORT = {"format": "osce-cpr-figures/1", "checklist": "01_basic_cpr_adult", "manikin": None, "alignment": None,
          "video": {"estimate": False}, "items": {}}


@dataclass
class Held:
    code: str
    attempt: str
    key: str
    parts: list[bytes]
    hold_id: int


def audit_rows(stand: Stand, action: str, target: str) -> list[dict[str, Any]]:
    from review_server.models import AuditEvent

    return stand.db(lambda s: [{"actor": e.actor, "details": e.details} for e in s.scalars(
        select(AuditEvent).where(AuditEvent.action == action, AuditEvent.target == target).order_by(AuditEvent.seq))])


def hold(stand: Stand, attempt: str, reason: str) -> int:
    reply = stand.json_request("POST", f"/api/attempts/{attempt}/holds", {"kind": "appeal", "reason": reason},
                               stand.user("archivist"))
    assert reply.status == 201, reply.body
    return int(reply.json()["id"])


@pytest.fixture
def held(stand: Stand, new_station: Any) -> Held:
    """A station's recorded attempt (a real fMP4 of its own), then an appeal hold on it."""
    code, _, _ = new_station()
    attempt, key = f"att-{code}", f"rec-{code}"
    stand.schedule(code, attempt)
    parts = encode_fmp4(shade=int(uuid.uuid4().int % 200))
    for seq, data in enumerate(parts):
        assert stand.put_fragment(code, key, "cam0", seq, data, attempt).status == 201
    return Held(code, attempt, key, parts, hold(stand, attempt, "апелляция №7 от 02.06.2026"))


def test_an_admins_delete_of_a_held_recording_is_refused_naming_the_hold(stand: Stand, held: Held) -> None:
    reply = stand.json_request("DELETE", f"/api/recordings/{held.key}", {"reason": "срок хранения истёк"},
                               stand.user("admin"))
    assert reply.status == 409, (reply.status, reply.body[:300])
    assert f"hold {held.hold_id}" in reply.error and "appeal" in reply.error and "апелляция №7" in reply.error
    # Nothing went: every fragment still reads back byte for byte, and the hold is still there.
    for data in held.parts:
        got = stand.request("GET", f"/api/media/{hashlib.sha256(data).hexdigest()}", stand.user("observer"))
        assert got.status == 200 and got.body == data
    holds = stand.request("GET", f"/api/attempts/{held.attempt}/holds", stand.user("archivist")).json()["holds"]
    assert [h["released_at"] for h in holds] == [None]
    refused = audit_rows(stand, "recording.delete.refused", held.key)
    assert len(refused) == 1 and refused[0]["actor"] == "user:admin"
    assert [h["id"] for h in refused[0]["details"]["holds"]] == [held.hold_id]
    assert audit_rows(stand, "recording.delete", held.key) == []
    # The control: once the appeal is decided and the hold released, the same delete goes through.
    released = stand.json_request("DELETE", f"/api/holds/{held.hold_id}", {"reason": "апелляция рассмотрена"},
                                  stand.user("archivist"))
    assert released.status == 200
    gone = stand.json_request("DELETE", f"/api/recordings/{held.key}", {"reason": "срок хранения истёк"},
                              stand.user("admin"))
    assert gone.status == 200, gone.body


def test_a_station_cannot_replace_the_cpr_report_of_a_held_attempt(stand: Stand, new_station: Any) -> None:
    code, _, _ = new_station()
    attempt = f"att-{code}"
    stand.schedule(code, attempt)
    url = f"/api/attempts/{attempt}/cpr-figures"
    headers = {**stand.station(code), "Content-Type": "application/json"}
    first = json.dumps(REPORT).encode()
    assert stand.request("PUT", url, headers, first).status == 200
    hold_id = hold(stand, attempt, "запрос Минздрава №12")
    forged = json.dumps(REPORT | {"items": {"16": ["Частота (видео): 110/мин (цель 100–120)"]}}).encode()
    reply = stand.request("PUT", url, headers, forged)
    assert reply.status == 409, (reply.status, reply.body[:300])
    assert f"hold {hold_id}" in reply.error

    def stored(s):  # type: ignore[no-untyped-def]
        from review_server.models import CprFigures

        return s.get(CprFigures, attempt).body.encode("utf-8")

    assert stand.db(stored) == first
    refused = audit_rows(stand, "attempt.cpr_figures.refused", attempt)
    assert len(refused) == 1 and refused[0]["details"]["sha256"] == hashlib.sha256(forged).hexdigest()


def test_a_schedule_reimport_cannot_give_a_held_attempt_to_another_candidate(stand: Stand, new_station: Any,
                                                                            tmp_path: Any) -> None:
    """The day's file edited after an appeal was lodged, so that the appealed result becomes someone else's."""
    from review_server.models import Attempt, Candidate

    code, _, _ = new_station()
    attempt = f"att-{code}"
    stand.schedule(code, attempt)
    number_of = lambda s: s.get(Candidate, s.get(Attempt, attempt).candidate_id).accreditation_number  # noqa: E731
    before = stand.db(number_of)
    hold_id = hold(stand, attempt, "апелляция №9")
    day = {"attempts": [{"attempt_id": attempt, "candidate": "2699999", "station_id": code,
                         "checklist": "01_basic_cpr_adult", "reading_starts_at": SCHEDULE_DAY}]}
    (tmp_path / "day.json").write_text(json.dumps(day), encoding="utf-8")
    done = stand.osce("server", "schedule", "import", str(tmp_path / "day.json"), "--specialty", "nursing",
                      "--title", "security pass", "--config", str(stand.config()))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"hold {hold_id}" in done.stderr and attempt in done.stderr
    assert stand.db(number_of) == before != "2699999"
    refused = audit_rows(stand, "schedule.import.refused", str(tmp_path / "day.json"))
    assert len(refused) == 1 and [h["id"] for h in refused[0]["details"]["holds"]] == [hold_id]
