"""Mark events from stations (idempotent by event_id) and examiners' corrections and finalisation (audited)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from checklists.marks import MarkEvent as WireEvent
from review_server import audit
from review_server.models import AuditEvent, MarkEvent

from .conftest import World


@pytest.fixture
def world(world: World) -> World:
    """The attempts these tests name, on the schedule: a station sends only for its own scheduled attempts."""
    world.schedule("att1")
    world.schedule("att2", station="S2")
    return world


CHECKLIST = "ab" * 32


def event(seq: int, kind: str = "mark", **fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"item": 1, "done": True} if kind == "mark" else {}
    if kind == "rating":
        defaults = {"rating": 4}
    wire = WireEvent.new(
        attempt_id="att1",
        station_id="S1",
        examiner="examiner",
        kind=kind,
        checklist_hash=CHECKLIST,
        seq=seq,
        **{**defaults, **fields},
    )
    return wire.to_json()


async def send(world: World, *events: dict[str, Any], token: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token else world.headers("station")
    signed = world.sign(list(events), token)  # as the station's agent sends them
    return await world.api.client.post("/api/marks", json={"events": signed}, headers=headers)


def audit_actions(world: World) -> list[str]:
    return world.api.run(lambda s: list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.seq))))


def stored(world: World) -> int:
    return world.api.run(lambda s: s.scalar(select(func.count()).select_from(MarkEvent)))


async def test_events_are_stored_once_by_event_id(world: World) -> None:
    e1, e2 = event(1), event(2, item=2, done=False, recording_offset_s=12.5)
    resp = await send(world, e1, e2)
    assert resp.status == 200
    assert await resp.json() == {"accepted": [e1["event_id"], e2["event_id"]], "duplicates": []}
    again = await send(world, e2, e1)
    assert again.status == 200
    assert await again.json() == {"accepted": [], "duplicates": [e2["event_id"], e1["event_id"]]}
    assert stored(world) == 2
    listed = await world.api.client.get("/api/attempts/att1/marks", headers=world.headers("examiner"))
    events = (await listed.json())["events"]
    assert [{k: v for k, v in e.items() if k != "source"} for e in events] == [e1, e2]
    assert events[0]["source"] == "station:S1"


async def test_same_event_id_with_other_content_is_409_and_the_batch_is_refused(world: World) -> None:
    e1 = event(1)
    assert (await send(world, e1)).status == 200
    changed = {**e1, "done": False}
    fresh = event(2)
    resp = await send(world, fresh, changed)
    assert resp.status == 409
    assert (await resp.json())["where"] == "events[1]"
    assert stored(world) == 1  # all or nothing: the fresh event was not kept either


async def test_every_finalisation_and_every_correction_after_it_is_audited(world: World) -> None:
    world.sign([event(1)])  # the examiner's tablet credential is issued (and audited) before the count starts
    before = len(audit_actions(world))
    plain = event(1)
    final = event(2, "finalise")
    correction = event(3, item=1, done=False, reason="re-watched the video: compressions too shallow")
    assert (await send(world, plain, final, correction)).status == 200
    assert audit_actions(world)[before:] == [audit.FINALISE, audit.MARK_CORRECTION]
    assert (await send(world, final, correction)).status == 200  # duplicates are not audited twice
    assert len(audit_actions(world)) == before + 2
    late = event(4, item=2, done=True)  # after the finalise without a reason: kept, but not applied
    assert (await send(world, late)).status == 200
    resp = await world.api.client.get("/api/attempts/att1/sheets", headers=world.headers("archivist"))
    assert resp.status == 200
    sheet = (await resp.json())["sheets"]["examiner"]
    assert sheet["marks"] == {"1": False} and sheet["finalised"] is True
    assert sheet["corrections"] == [correction["event_id"]] and sheet["rejected"] == [late["event_id"]]


async def test_a_station_cannot_send_events_for_another_station(world: World) -> None:
    resp = await send(world, event(1), token=world.other_station_token)
    assert resp.status == 403 and (await resp.json())["where"] == "events[0].station_id"
    assert stored(world) == 0


async def test_events_breaking_the_shared_format_are_refused_naming_the_field(world: World) -> None:
    bad_cases = {
        "event_id": {**event(1), "event_id": "not-a-uuid"},
        "kind": {**event(1), "kind": "erase"},
        "wall_time": {**event(1), "wall_time": "2026-06-01T09:30:00+03:00"},
        "checklist_hash": {**event(1), "checklist_hash": "../../etc/passwd"},
        "item": {**event(1), "item": None},
        "extra": {**event(1), "extra": 1},
    }
    for name, bad in bad_cases.items():
        resp = await send(world, bad)
        assert resp.status == 422, name
        assert (await resp.json())["where"].startswith("events[0]"), name
    v1 = {**event(1), "event_id": str(uuid.uuid1())}  # the format asks for UUID4
    assert (await send(world, v1)).status == 422
    assert stored(world) == 0


async def test_examiner_corrects_and_finalises_on_the_server(world: World) -> None:
    assert (await send(world, event(1))).status == 200
    client, examiner = world.api.client, world.headers("examiner")
    fix = {"event_id": str(uuid.uuid4()), "kind": "mark", "item": 1, "done": False, "reason": "video shows otherwise"}
    fix |= {"checklist_hash": CHECKLIST, "wall_time": "2026-06-01T10:00:00Z", "seq": 2}
    resp = await client.post("/api/attempts/att1/marks", json=fix, headers=examiner)
    assert resp.status == 200, await resp.text()
    # Before the examiner signs, marking from the observation room is ordinary marking: no reason needed.
    unsigned = {**fix, "event_id": str(uuid.uuid4()), "reason": None, "item": 2, "done": True, "seq": 3}
    resp = await client.post("/api/attempts/att1/marks", json=unsigned, headers=examiner)
    assert resp.status == 200 and (await resp.json())["accepted"] == [unsigned["event_id"]], await resp.text()
    final = {"event_id": str(uuid.uuid4()), "checklist_hash": CHECKLIST, "wall_time": "2026-06-01T10:01:00Z"}
    resp = await client.post("/api/attempts/att1/finalise", json=final | {"seq": 4}, headers=examiner)
    assert resp.status == 200, await resp.text()
    # Once signed, a change is a correction and needs a reason.
    no_reason = {**fix, "event_id": str(uuid.uuid4()), "reason": None, "seq": 5}
    resp = await client.post("/api/attempts/att1/marks", json=no_reason, headers=examiner)
    assert resp.status == 422 and (await resp.json())["where"] == "reason", await resp.text()
    signed_fix = {**fix, "event_id": str(uuid.uuid4()), "done": True, "seq": 5, "reason": "second look"}
    resp = await client.post("/api/attempts/att1/marks", json=signed_fix, headers=examiner)
    assert resp.status == 200, await resp.text()
    assert audit_actions(world)[-3:] == [audit.MARK_CORRECTION, audit.FINALISE, audit.MARK_CORRECTION]
    rows = world.api.run(lambda s: list(s.scalars(select(MarkEvent).order_by(MarkEvent.id))))
    assert [(r.kind, r.item, r.reason, r.examiner, r.station_id, r.source) for r in rows[1:]] == [
        ("mark", 1, "video shows otherwise", "examiner", "S1", "user:examiner"),
        ("mark", 2, None, "examiner", "S1", "user:examiner"),
        ("finalise", None, None, "examiner", "S1", "user:examiner"),
        ("mark", 1, "second look", "examiner", "S1", "user:examiner"),
    ]
    posing = {**fix, "event_id": str(uuid.uuid4()), "examiner": "someone-else"}
    assert (await client.post("/api/attempts/att1/marks", json=posing, headers=examiner)).status == 422


async def test_examiner_cannot_mark_an_unassigned_station(world: World) -> None:
    other = {**event(1), "station_id": "S2", "attempt_id": "att2", "examiner": "examiner2"}  # S2's examiner
    assert (await send(world, other, token=world.other_station_token)).status == 200
    fix = {"event_id": str(uuid.uuid4()), "kind": "mark", "item": 1, "done": False, "reason": "r"}
    fix |= {"checklist_hash": CHECKLIST, "wall_time": "2026-06-01T10:00:00Z", "seq": 2}
    resp = await world.api.client.post("/api/attempts/att2/marks", json=fix, headers=world.headers("examiner"))
    assert resp.status == 404 and (await resp.json())["error"] == "no attempt 'att2'"  # as if missing: no oracle
    assert stored(world) == 1


async def test_export_is_audited_and_search_finds_by_accreditation_number(world: World) -> None:
    assert (await send(world, event(1))).status == 200
    admin, archivist = world.headers("admin"), world.headers("archivist")
    resp = await world.api.client.post("/api/candidates", json={"accreditation_number": "2026-0001"}, headers=admin)
    assert resp.status == 201

    def link(s):  # type: ignore[no-untyped-def]
        from review_server.models import Attempt, Candidate

        s.get(Attempt, "att1").candidate_id = s.scalar(select(Candidate.id))

    world.api.run(link)
    found = await world.api.client.get("/api/archive/search", params={"number": "2026-0001"}, headers=archivist)
    assert (await found.json())["attempts"] == [{"attempt_id": "att1", "station": "S1", "recordings": []}]
    export = await world.api.client.get("/api/archive/attempts/att1/export", headers=archivist)
    bundle = await export.json()
    assert bundle["accreditation_number"] == "2026-0001" and len(bundle["mark_events"]) == 1
    assert audit_actions(world)[-1] == audit.EXPORT


async def test_one_attempt_one_checklist_version(world: World) -> None:
    assert (await send(world, event(1))).status == 200
    other = {**event(2), "checklist_hash": "cd" * 32}
    resp = await send(world, other)
    assert resp.status == 409 and (await resp.json())["where"] == "events[0].checklist_hash"
    assert stored(world) == 1


async def test_unsigned_station_marks_only_during_an_upgrade_and_only_for_an_assigned_examiner(world: World) -> None:
    """accept_unsigned_station_marks (for agents not yet upgraded to signed marks): off, a station's unsigned mark
    is refused and audited; on, it is accepted when the named examiner is assigned to the station, audited."""
    from review_server.web import CONFIG

    headers = world.headers("station")
    unsigned = event(1)
    refused = await world.api.client.post("/api/marks", json={"events": [unsigned]}, headers=headers)
    assert refused.status == 403 and (await refused.json())["where"] == "events[0].proof"
    assert audit_actions(world)[-1] == "marks.refused" and stored(world) == 0
    world.api.app[CONFIG].accept_unsigned_station_marks = True
    ok = await world.api.client.post("/api/marks", json={"events": [unsigned]}, headers=headers)
    assert ok.status == 200 and audit_actions(world)[-1] == "marks.unsigned_accepted"
    stranger = {**event(2), "examiner": "observer"}  # not an examiner assigned to S1
    assert (await world.api.client.post("/api/marks", json={"events": [stranger]}, headers=headers)).status == 403
    assert stored(world) == 1
