"""Station health events on the server: stored once per event id, closed by their end, refused when malformed or
sent for another station, and found by time for the attempt page."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from review_server.models import Station
from review_server.station_health import events_between

from .conftest import Api, World


@pytest.fixture
def world(world: World) -> World:
    """The attempts these tests name, on the schedule: a station sends only for its own scheduled attempts."""
    world.schedule("A1")
    return world


URL = "/api/stations/S1/health-events"


def ev(event_id: str, code: str, start: str, end: str | None = None, attempt: str | None = "A1") -> dict[str, Any]:
    return {"id": event_id, "code": code, "text": f"{code}: текст", "attempt_id": attempt,
            "started_at": start, "ended_at": end}


async def put(world: World, events: Any, url: str = URL, token: str | None = None) -> tuple[int, dict[str, Any]]:
    resp = await world.api.client.put(url, json={"events": events},
                                      headers=Api.station_headers(token or world.station_token))
    return resp.status, await resp.json()


def t(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


async def test_events_are_stored_once_and_closed_by_their_end(world: World) -> None:
    status, body = await put(world, [ev("e1", "camera_frozen", "2026-07-01T09:00:05Z"),
                                     ev("e2", "disk_low", "2026-07-01T08:00:00Z", "2026-07-01T08:10:00Z", None)])
    assert (status, body["new"], body["ended"]) == (200, 2, 0), body
    status, body = await put(world, [ev("e1", "camera_frozen", "2026-07-01T09:00:05Z")])  # sent again
    assert (status, body["new"], body["ended"]) == (200, 0, 0), body
    status, body = await put(world, [ev("e1", "camera_frozen", "2026-07-01T09:00:05Z", "2026-07-01T09:00:35Z")])
    assert (status, body["new"], body["ended"]) == (200, 0, 1), body

    def found(s: Any) -> list[dict[str, Any]]:
        sid = s.query(Station).filter_by(code="S1").one().id
        return events_between(s, sid, t("2026-07-01T09:00:00Z"), t("2026-07-01T09:08:00Z"), "A1")

    rows = world.api.run(found)
    assert [(r["code"], r["ended_at"]) for r in rows] == [("camera_frozen", "2026-07-01T09:00:35.000+00:00")]


async def test_bad_events_are_refused_naming_where(world: World) -> None:
    for events, where in (
        ([ev("e1", "camera_frozen", "09:00")], "events[0].started_at"),
        ([ev("e1", "x", "2026-07-01T09:00:05Z", "2026-07-01T09:00:00Z")], "events[0].ended_at"),
        ([{**ev("e1", "x", "2026-07-01T09:00:05Z"), "extra": 1}], "events[0].extra"),
        ([ev("../e", "x", "2026-07-01T09:00:05Z")], "events[0].id"),
        ("not a list", "events"),
        ([ev(f"e{i}", "x", "2026-07-01T09:00:05Z") for i in range(201)], "events"),
    ):
        status, body = await put(world, events)
        assert status == 422 and body["where"] == where, (where, body)


async def test_a_station_sends_only_its_own_and_users_cannot(world: World) -> None:
    status, _ = await put(world, [ev("e1", "x", "2026-07-01T09:00:05Z")], url="/api/stations/S2/health-events")
    assert status == 403
    resp = await world.api.client.put(URL, json={"events": []}, headers=world.headers("admin"))
    assert resp.status == 403
    resp = await world.api.client.put(URL, json={"events": []})
    assert resp.status == 401
