"""Fragment upload from stations, the audited recording view and download, and retention deletion."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from review_server import audit
from review_server.models import AuditEvent, Fragment, Recording
from review_server.web import STORAGE
from scripts.harness.fmp4_bytes import init_bytes, media_bytes

from .conftest import World


@pytest.fixture
def world(world: World) -> World:
    """The attempts these tests name, on the schedule: a station sends only for its own scheduled attempts."""
    world.schedule("att1")
    return world


def frag_url(key: str = "rec1", track: str = "cam1", seq: int = 1) -> str:
    return f"/api/recordings/{key}/tracks/{track}/fragments/{seq}"


async def upload(world: World, data: bytes, *, key: str = "rec1", track: str = "cam1", seq: int = 1, **query):  # type: ignore[no-untyped-def]
    headers = {**world.headers("station"), "X-Content-SHA256": hashlib.sha256(data).hexdigest()}
    return await world.api.client.put(frag_url(key, track, seq), data=data, headers=headers, params=query)


def actions(world: World) -> list[str]:
    return world.api.run(lambda s: list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.seq))))


async def test_upload_a_track_view_it_and_download_each_fragment(world: World) -> None:
    init, media1, media2 = init_bytes(), media_bytes(1100, seed=1), media_bytes(1100, seed=2)
    resp = await upload(world, init, seq=0, attempt_id="att1")
    assert resp.status == 201 and (await resp.json())["stored"] is True
    assert (await upload(world, media1, seq=1, start="0", end="2.0")).status == 201
    assert (await upload(world, media2, seq=2, start="2.0", end="4.0")).status == 201
    assert (await upload(world, init_bytes(seed=3), track="mic", seq=0)).status == 201
    storage = world.api.app[STORAGE]
    assert storage.get(hashlib.sha256(media1).hexdigest()) == media1

    view = await world.api.client.get("/api/recordings/rec1", headers=world.headers("observer"))
    assert view.status == 200
    body = await view.json()
    assert body["station"] == "S1" and body["attempt_id"] == "att1"
    assert [(f["track"], f["kind"], f["seq"]) for f in body["fragments"]] == [
        ("cam1", "init", 0),
        ("cam1", "media", 1),
        ("cam1", "media", 2),
        ("mic", "init", 0),
    ]
    assert body["fragments"][2]["start_s"] == 2.0 and body["fragments"][2]["end_s"] == 4.0
    got = await world.api.client.get(body["fragments"][1]["url"], headers=world.headers("archivist"))
    assert got.status == 200 and await got.read() == media1
    assert actions(world)[-2:] == [audit.RECORDING_VIEW, audit.MEDIA_DOWNLOAD]


async def test_resending_the_same_fragment_is_a_no_op_and_other_bytes_conflict(world: World) -> None:
    assert (await upload(world, media_bytes(150, seed=1))).status == 201
    again = await upload(world, media_bytes(150, seed=1))
    assert again.status == 200 and (await again.json())["stored"] is False
    other = await upload(world, media_bytes(150, seed=2))
    assert other.status == 409
    assert world.api.run(lambda s: s.scalar(select(func.count()).select_from(Fragment))) == 1


async def test_a_station_cannot_write_into_another_stations_recording(world: World) -> None:
    assert (await upload(world, media_bytes(64, seed=1))).status == 201
    data = media_bytes(64, seed=2)
    headers = {
        "Authorization": f"Bearer {world.other_station_token}",
        "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
    }
    resp = await world.api.client.put(frag_url(seq=2), data=data, headers=headers)
    assert resp.status == 409
    assert not world.api.app[STORAGE].exists(hashlib.sha256(data).hexdigest())


async def test_examiners_see_only_recordings_of_their_stations(world: World) -> None:
    assert (await upload(world, media_bytes(64, seed=1))).status == 201
    data = media_bytes(64, seed=2)
    headers = {
        "Authorization": f"Bearer {world.other_station_token}",
        "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
    }
    assert (await world.api.client.put(frag_url(key="rec2"), data=data, headers=headers)).status == 201
    examiner = world.headers("examiner")
    assert (await world.api.client.get("/api/recordings/rec1", headers=examiner)).status == 200
    # Outside their assignments reads exactly like missing (same status and body): no existence oracle.
    refused = await world.api.client.get("/api/recordings/rec2", headers=examiner)
    missing = await world.api.client.get("/api/recordings/rec9", headers=examiner)
    assert refused.status == missing.status == 404
    assert await refused.json() == {"error": "no recording 'rec2'", "where": "URL key"}
    assert (await missing.json())["error"] == "no recording 'rec9'"
    media = await world.api.client.get(f"/api/media/{hashlib.sha256(data).hexdigest()}", headers=examiner)
    nothing = await world.api.client.get(f"/api/media/{'0' * 64}", headers=examiner)
    assert media.status == nothing.status == 404
    no_fragment = {"error": "no fragment with this SHA-256", "where": "URL sha256"}
    assert await media.json() == await nothing.json() == no_fragment


async def test_retention_deletes_rows_and_unshared_media_with_an_audit_record(world: World) -> None:
    shared, own = media_bytes(100, seed=1), media_bytes(100, seed=2)
    assert (await upload(world, shared, key="recA", seq=1)).status == 201
    assert (await upload(world, shared, key="recB", seq=1)).status == 201
    assert (await upload(world, own, key="recA", seq=2)).status == 201
    admin = world.headers("admin")
    no_reason = await world.api.client.delete("/api/recordings/recA", json={"reason": "  "}, headers=admin)
    assert no_reason.status == 422
    resp = await world.api.client.delete("/api/recordings/recA", json={"reason": "5 years passed"}, headers=admin)
    assert resp.status == 200
    assert (await resp.json())["deleted_media"] == [hashlib.sha256(own).hexdigest()]
    storage = world.api.app[STORAGE]
    assert storage.exists(hashlib.sha256(shared).hexdigest())  # recB still refers to it
    assert not storage.exists(hashlib.sha256(own).hexdigest())
    keys = world.api.run(lambda s: list(s.scalars(select(Recording.key))))
    assert keys == ["recB"]
    assert actions(world)[-1] == audit.DELETE
    assert (await world.api.client.get("/api/recordings/recA", headers=world.headers("observer"))).status == 404
