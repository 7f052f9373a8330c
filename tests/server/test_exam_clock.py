"""The exam clock: each station reads its own part of the day's schedule, with the server's time."""

from __future__ import annotations

import datetime as dt
import json

from review_server.web import CONFIG
from tests.server.conftest import World

SCHEDULE = {"attempts": [
    {"attempt_id": "d1-s1-1", "candidate": "2611001", "station_id": "S1", "checklist": "cpr",
     "reading_starts_at": "2026-11-26T09:00:00+00:00"},
    {"attempt_id": "d1-s2-1", "candidate": "2611002", "station_id": "S2", "checklist": "bp",
     "reading_starts_at": "2026-11-26T09:00:00+00:00"},
]}


async def test_a_station_gets_its_own_attempts_and_the_server_time(world: World, tmp_path) -> None:
    path = tmp_path / "day.json"
    path.write_text(json.dumps(SCHEDULE), encoding="utf-8")
    world.api.app[CONFIG].schedule_file = path
    client = world.api.client
    resp = await client.get("/api/stations/S1/schedule", headers={"Authorization": f"Bearer {world.station_token}"})
    assert resp.status == 200
    body = await resp.json()
    assert [a["attempt_id"] for a in body["attempts"]] == ["d1-s1-1"]
    server_time = dt.datetime.fromisoformat(body["server_time"])
    assert abs((server_time - dt.datetime.now(dt.UTC)).total_seconds()) < 5
    other = await client.get("/api/stations/S2/schedule", headers={"Authorization": f"Bearer {world.station_token}"})
    assert other.status == 403 and "its own schedule" in (await other.json())["error"]


async def test_an_unreadable_schedule_is_named(world: World, tmp_path) -> None:
    path = tmp_path / "day.json"
    path.write_text("{not json", encoding="utf-8")
    world.api.app[CONFIG].schedule_file = path
    resp = await world.api.client.get("/api/stations/S1/schedule",
                                      headers={"Authorization": f"Bearer {world.station_token}"})
    assert resp.status == 503
    assert str(path) in (await resp.json())["where"]
