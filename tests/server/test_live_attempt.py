"""What the observation room's marking panel reads: GET /api/live/{station}/attempt (the attempt at the station now,
its checklist and the caller's sheet), and marks posted beside the picture through the examiners' event route."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

from checklists.loader import DATA_DIR, load_checklist
from review_server.live import LIVE_HUB
from review_server.web import CONFIG

from .conftest import World

CPR = load_checklist(DATA_DIR / "01_basic_cpr_adult.yaml")
BP = load_checklist(DATA_DIR / "03_blood_pressure.yaml")


def _day(world: World, tmp_path: Path, started_s_ago: float, imported: bool = True) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=started_s_ago)
    attempts = [{"attempt_id": f"S1-{i}", "candidate": f"26110{i}", "station_id": "S1",
                 "checklist": "01_basic_cpr_adult",
                 "reading_starts_at": (start + dt.timedelta(seconds=200 * i)).isoformat(), "reading_s": 10,
                 "performing_s": 100} for i in range(2)]
    path = tmp_path / "day.json"
    path.write_text(json.dumps({"attempts": attempts}), encoding="utf-8")
    world.api.app[CONFIG].schedule_file = path
    if imported:  # into the database too (osce server schedule import)
        world.schedule(*(a["attempt_id"] for a in attempts))


def _event(attempt: str, seq: int, **kw: object) -> dict[str, object]:
    return {"event_id": str(uuid.uuid4()), "attempt_id": attempt, "station_id": "S1", "examiner": "examiner",
            "kind": "mark", "item": 1, "done": True, "rating": None, "reason": None, "checklist_hash": CPR.content_hash,
            "wall_time": "2026-06-01T09:30:00Z", "recording_offset_s": None, "seq": seq, **kw}


async def test_the_attempt_in_progress_with_its_checklist_and_my_sheet(world: World, tmp_path: Path) -> None:
    _day(world, tmp_path, started_s_ago=30, imported=False)
    client, examiner = world.api.client, world.headers("examiner")
    r = await client.get("/api/live/S1/attempt", headers=examiner)
    body = await r.json()
    assert r.status == 200, body
    assert body["attempt"] == {"attempt_id": "S1-0", "candidate": "261100", "phase": "performing",
                               "time_left_s": body["attempt"]["time_left_s"], "on_server": False}
    assert 75 < body["attempt"]["time_left_s"] <= 80
    assert body["checklist"]["content_hash"] == CPR.content_hash
    assert [i["number"] for i in body["checklist"]["items"]] == CPR.item_numbers
    assert body["checklist"]["items"][0]["presentation"] in ("Выполнить", "Сказать", "Выполнить/Сказать")
    assert body["sheet"] == {"marks": {}, "finalised": False, "next_seq": 1} and body["can_mark"] is True

    # The day's import makes the attempt known; the station's mark and one from the room join the same sheet.
    world.schedule("S1-0", "S1-1")
    r = await client.post("/api/marks", json={"events": world.sign([_event("S1-0", 1)])},
                          headers=world.headers("station"))
    assert r.status == 200
    mark = _event("S1-0", 2, item=3, done=False, reason="комната наблюдения")
    for name in ("examiner", "attempt_id", "station_id"):
        del mark[name]
    r = await client.post("/api/attempts/S1-0/marks", json=mark, headers=examiner)
    assert r.status == 200 and (await r.json())["accepted"] == [mark["event_id"]]
    body = await (await client.get("/api/live/S1/attempt", headers=examiner)).json()
    assert body["attempt"]["on_server"] is True
    assert body["sheet"] == {"marks": {"1": True, "3": False}, "finalised": False, "next_seq": 3}

    observer = await (await client.get("/api/live/S1/attempt", headers=world.headers("observer"))).json()
    assert observer["attempt"]["attempt_id"] == "S1-0" and observer["sheet"] is None and observer["can_mark"] is False


async def test_the_stations_own_word_wins_and_between_attempts_the_last_one_stays(world: World, tmp_path: Path) -> None:
    _day(world, tmp_path, started_s_ago=150)  # S1-0 ended 40 s ago, S1-1 starts in 50 s
    client, examiner = world.api.client, world.headers("examiner")
    body = await (await client.get("/api/live/S1/attempt", headers=examiner)).json()
    assert body["attempt"]["attempt_id"] == "S1-0" and body["attempt"]["phase"] == "done"

    # An attempt started by hand at the station: only its live meta knows it, and which checklist version.
    channel = world.api.app[LIVE_HUB].channel("S1", "cam0")
    channel.meta = {"attempt_id": "S1-manual", "checklist_hash": BP.content_hash, "phase": "reading",
                    "time_left": 12.5, "candidate": "2611999"}
    body = await (await client.get("/api/live/S1/attempt", headers=examiner)).json()
    assert body["attempt"] == {"attempt_id": "S1-manual", "candidate": "2611999", "phase": "reading",
                               "time_left_s": 12.5, "on_server": False}
    assert body["checklist"]["title"] == BP.title


async def test_refusals_name_what_and_where(world: World) -> None:
    client = world.api.client
    r = await client.get("/api/live/S2/attempt", headers=world.headers("examiner"))  # not assigned: as if missing
    assert r.status == 404 and await r.json() == {"error": "no station 'S2'", "where": "URL station"}
    r = await client.get("/api/live/nowhere/attempt", headers=world.headers("observer"))
    assert r.status == 404 and (await r.json())["where"] == "URL station"
    body = await (await client.get("/api/live/S1/attempt", headers=world.headers("observer"))).json()
    assert body["attempt"] is None and body["checklist"] is None  # no schedule, nothing live
