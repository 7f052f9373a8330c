"""A recording cut by an agent restart (part-1, part-2) on the attempt page: each part's marks, CPR figures and
the station's health events at their place on that part's media clock, from the part start times the station
sends with its init files (media_from)."""

from __future__ import annotations

import hashlib
import json
import re

from checklists.marks import MarkEvent as WireEvent
from review_server.models import Recording
from scripts.harness.fmp4_bytes import init_bytes, media_bytes

from .archive_helpers import CPR, add_schedule, checklist, link_attempt, post_marks
from .conftest import World

PARTS = {"Q1.part-1": "2026-06-01T09:00:01.500Z", "Q1.part-2": "2026-06-01T09:00:20.000Z"}


async def _put(world: World, key: str, seq: int, data: bytes, query: str) -> int:
    resp = await world.api.client.put(
        f"/api/recordings/{key}/tracks/cam0/fragments/{seq}?attempt_id=Q1{query}", data=data,
        headers={**world.headers("station"), "X-Content-SHA256": hashlib.sha256(data).hexdigest()})
    return resp.status


async def _two_parts(world: World) -> None:
    ids = add_schedule(world)
    world.schedule("Q1")
    for n, (key, media_from) in enumerate(PARTS.items()):
        assert await _put(world, key, 0, init_bytes(seed=20 + n), f"&media_from={media_from}") == 201
        for seq in (1, 2, 3):
            data = media_bytes(300, seed=30 + 10 * n + seq)
            assert await _put(world, key, seq, data, f"&start={2.0 * (seq - 1)}&end={2.0 * seq}") == 201
    cl = checklist(CPR)
    marks = [WireEvent.new(attempt_id="Q1", station_id="S1", examiner="examiner", kind="mark", seq=seq, item=item,
                           done=True, checklist_hash=cl.content_hash, recording_offset_s=offset,
                           wall_time=f"2026-06-01T09:00:{offset:06.3f}Z").to_json()
             for seq, (item, offset) in enumerate(((1, 3.0), (2, 22.0)), start=1)]
    await post_marks(world, marks)
    link_attempt(world, "Q1", "2611077", ids, "CPR")
    frozen = {"id": "f1", "code": "camera_frozen", "text": "Камера cam0: изображение застыло", "attempt_id": "Q1",
              "started_at": "2026-06-01T09:00:21Z", "ended_at": "2026-06-01T09:00:24Z"}
    resp = await world.api.client.put("/api/stations/S1/health-events", json={"events": [frozen]},
                                      headers=world.headers("station"))
    assert resp.status == 200, await resp.text()
    report = {"format": "osce-cpr-figures/1", "checklist": "01_basic_cpr_adult", "manikin": None, "alignment": None,
              "video": {"estimate": True, "confidence": 0.9, "rate_per_min": 110.0, "first_compression_s": 21.0,
                        "media_from": PARTS["Q1.part-1"], "pauses": [{"start": 22.5, "length": 1.0}]},
              "items": {}}
    resp = await world.api.client.put("/api/attempts/Q1/cpr-figures", data=json.dumps(report).encode(),
                                      headers={**world.headers("station"), "Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()


def _points(page: str) -> dict[str, str]:
    """item -> data-t of the timeline's mark points."""
    return {item: t for t, item in re.findall(r'class="mark-point[^"]*"[^>]*data-t="([0-9.-]+)" data-item="(\d+)"',
                                               page)}


async def test_each_part_shows_its_own_marks_figures_and_health_events(world: World) -> None:
    await _two_parts(world)
    starts = world.api.run(lambda s: {r.key: r.media_from.isoformat() for r in s.query(Recording)})
    assert starts == {"Q1.part-1": "2026-06-01T09:00:01.500000+00:00", "Q1.part-2": "2026-06-01T09:00:20+00:00"}
    archivist = world.headers("archivist")

    first = await (await world.api.client.get("/attempts/Q1?rec=Q1.part-1", headers=archivist)).text()
    assert _points(first) == {"1": "1.500"}  # 3.0 s after the attempt's start, media started 1.5 s in

    second = await (await world.api.client.get("/attempts/Q1?rec=Q1.part-2", headers=archivist)).text()
    assert _points(second) == {"2": "2.000"}  # 22 s after the start, part-2's media started 20 s in
    assert re.search(r'class="first-compression"[^>]*data-t="2\.500"', second)  # 21 s on part-1's clock
    assert 'data-start="4.00" data-length="1.00"' in second  # the pause at 22.5 s on part-1's clock
    band = re.search(r'class="band health" data-left="([0-9.]+)%" data-width="([0-9.]+)%"', second)
    assert band is not None
    seek = re.search(r'<ul class="health"><li data-code="camera_frozen">09:00:21–09:00:24: Камера cam0: '
                     r'изображение застыло <button type="button" class="seek" data-t="1.000"', second)
    assert seek is not None, second[second.find('<ul class="health"'):][:400]


async def test_a_bad_part_start_is_refused_naming_it(world: World) -> None:
    for bad in ("yesterday", "2026-06-01T09:00:00+03:00"):
        resp = await world.api.client.put(
            f"/api/recordings/R9/tracks/cam0/fragments/0?media_from={bad}", data=init_bytes(seed=1),
            headers={**world.headers("station"), "X-Content-SHA256": hashlib.sha256(init_bytes(seed=1)).hexdigest()})
        assert resp.status == 400 and (await resp.json())["where"] == "query media_from"
