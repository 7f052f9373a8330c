"""The attempt review page and the archive search page on the server: who may open them, what they show (marks
with their history, the score from scores.py, recording gaps, CPR figures, never a name), byte ranges of a track
and the audit of views. Playback in Chromium is tests/e2e/test_review_page.py."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from sqlalchemy import select

from review_server.models import AuditEvent, Candidate, CandidatePersonal, MarkEvent
from review_server.routes.attempt_page import ATTEMPT_MEDIA, ATTEMPT_VIEW
from review_server.routes.track_file import Unsatisfiable, byte_range
from review_server.scores import attempt_outcome
from scripts.harness.fmp4_bytes import init_bytes, media_bytes

from .archive_helpers import CPR, add_schedule, checklist, events, link_attempt, post_marks
from .conftest import World

# Two tracks of fMP4-shaped fragments (the page never decodes them): cam1 lost its second media fragment.
TRACKS = {
    "cam0": [(0, init_bytes(seed=0), None, None), (1, media_bytes(300, seed=1), 0.0, 2.0),
             (2, media_bytes(300, seed=2), 2.0, 4.0), (3, media_bytes(300, seed=3), 4.0, 6.0)],
    "cam1": [(0, init_bytes(seed=10), None, None), (1, media_bytes(300, seed=11), 0.0, 2.0),
             (3, media_bytes(300, seed=13), 4.0, 6.0)],
}
CPR_REPORT = {
    "format": "osce-cpr-figures/1",
    "checklist": "01_basic_cpr_adult",
    "video": {"estimate": True, "confidence": 0.9, "rate_per_min": 110.0, "first_compression_s": 1.5,
              "rate_series": [{"t": 1.0, "rate": None}, {"t": 2.0, "rate": 108.0}, {"t": 3.0, "rate": 112.0}],
              "pauses": [{"start": 4.0, "length": 1.5}]},
    "manikin": None,
    "alignment": None,
    "items": {"16": ["Частота (видео): 110/мин (цель 100–120)"]},
}


async def _attempt(world: World, attempt_id: str = "P1", number: str = "2611042") -> None:
    ids = add_schedule(world)
    world.schedule(attempt_id)
    client = world.api.client
    for track, frags in TRACKS.items():
        for seq, data, start, end in frags:
            query = f"?attempt_id={attempt_id}" + (f"&start={start}&end={end}" if start is not None else "")
            resp = await client.put(
                f"/api/recordings/rec-{attempt_id}/tracks/{track}/fragments/{seq}{query}",
                data=data,
                headers={**world.headers("station"), "X-Content-SHA256": hashlib.sha256(data).hexdigest()},
            )
            assert resp.status == 201, await resp.text()
    cl = checklist(CPR)
    await post_marks(world, events(attempt_id, "S1", cl, set(cl.item_numbers[:14])))
    link_attempt(world, attempt_id, number, ids, "CPR")
    # A correction after signing: item 2 "done" -> "not done". Its time and place on the recording are the
    # server's (when it was made, from the station marks' zero), not the 3.5 s the page sends.
    corr = {"kind": "mark", "item": 2, "done": False, "reason": "по видео: не потормошил", "seq": 100,
            "checklist_hash": cl.content_hash, "wall_time": "2026-06-01T09:30:00Z", "recording_offset_s": 3.5,
            "event_id": "0b5a4c2e-9d1f-4e3a-8b7c-6d5e4f3a2b1c"}
    resp = await client.post(f"/api/attempts/{attempt_id}/marks", json=corr, headers=world.headers("examiner"))
    assert resp.status == 200, await resp.text()
    body = json.dumps(CPR_REPORT, ensure_ascii=False).encode()
    resp = await client.put(f"/api/attempts/{attempt_id}/cpr-figures", data=body,
                            headers={**world.headers("station"), "Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()

    def personal(s):  # type: ignore[no-untyped-def]
        cand = s.scalar(select(Candidate).where(Candidate.accreditation_number == number))
        s.add(CandidatePersonal(candidate_id=cand.id, last_name="Сидорова", first_name="Марфа"))

    world.api.run(personal)


async def test_who_may_open_the_attempt_page(world: World) -> None:
    await _attempt(world)
    client = world.api.client
    for role, status in (("examiner", 200), ("archivist", 200), ("observer", 403), ("admin", 403)):
        resp = await client.get("/attempts/P1", headers=world.headers(role))
        assert resp.status == status, (role, resp.status)
        track = await client.get("/attempts/P1/recordings/rec-P1/cam0", headers=world.headers(role))
        assert track.status == status, (role, track.status)
    anon = await client.get("/attempts/P1", headers={"Accept": "text/html"}, allow_redirects=False)
    assert anon.status == 303 and anon.headers["Location"] == "/login"
    assert (await client.get("/attempts/P1")).status == 401

    # An examiner sees only the stations assigned to them: move the attempt to S2.
    def move(s):  # type: ignore[no-untyped-def]
        from review_server.models import Attempt, Station

        s.get(Attempt, "P1").station_id = s.scalar(select(Station.id).where(Station.code == "S2"))

    world.api.run(move)
    resp = await client.get("/attempts/P1", headers=world.headers("examiner"))
    assert resp.status == 404 and await resp.json() == {"error": "no attempt 'P1'", "where": "URL attempt_id"}
    assert (await client.get("/attempts/P1", headers=world.headers("archivist"))).status == 200
    assert (await client.get("/attempts/NOPE", headers=world.headers("archivist"))).status == 404
    bad = await client.get("/attempts/P1?rec=../x", headers=world.headers("archivist"))
    assert bad.status == 400 and (await bad.json())["where"] == "query rec"


async def test_page_shows_marks_history_score_gaps_and_cpr_figures(world: World) -> None:
    await _attempt(world)
    resp = await world.api.client.get("/attempts/P1", headers=world.headers("archivist"))
    assert resp.status == 200
    text = await resp.text()
    assert "2611042" in text and "Сидорова" not in text and "Марфа" not in text

    out = world.api.run(lambda s: attempt_outcome(s, "P1"))
    assert out.percent is not None and out.scores["examiner"].done == 13  # 14 done, then item 2 corrected
    result = re.search(r'class="result (\w+)" data-percent="([^"]+)" data-result="([^"]+)"', text)
    assert result is not None
    assert float(result.group(2)) == out.percent and result.group(3) == out.result == "не сдано"
    assert f"{out.percent:.1f}".replace(".", ",") + " % — не сдано" in text

    # One point per mark event with a time: 19 from the station and the correction, at the server's offset.
    points = re.findall(r'class="mark-point[^"]*" data-left="[^"]+" data-t="([\d.]+)" data-item="(\d+)"', text)
    offset = world.api.run(lambda s: s.scalar(select(MarkEvent.recording_offset_s).where(
        MarkEvent.event_id == "0b5a4c2e-9d1f-4e3a-8b7c-6d5e4f3a2b1c")))
    assert offset is not None and offset != 3.5
    assert len(points) == 20 and (f"{offset:.3f}", "2") in points
    row2 = re.search(r'<tr data-item="2">.*?</tr>', text, re.S)
    assert row2 is not None and "было: да" in row2.group(0) and "по видео: не потормошил" in row2.group(0)
    assert 'data-value="no"' in row2.group(0) and "user:examiner" in row2.group(0) and "station:S1" in row2.group(0)

    # The missing fragment of cam1 (2–4 s) is a gap on the timeline and in the list.
    gaps = re.findall(r'class="band gap"[^>]*data-track="(\w+)" data-kind="(\w+)"', text)
    assert gaps == [("cam1", "missing")]
    assert "cam1: нет фрагмента, 0:02.0–0:04.0" in text

    # CPR: the pause band, the first compression and the rate line; the item's figure beside item 16.
    assert 'class="band cpr-pause"' in text and 'data-start="4.00" data-length="1.50"' in text
    assert 'class="first-compression"' in text and 'data-t="1.500"' in text
    assert text.count("<polyline") == 1
    row16 = re.search(r'<tr data-item="16">.*?</tr>', text, re.S)
    assert row16 is not None and "Частота (видео): 110/мин" in row16.group(0)

    en = await (await world.api.client.get("/attempts/P1?lang=en", headers=world.headers("archivist"))).text()
    assert '<html lang="en">' in en and "% — failed" in en and "fragment missing" in en

    views = world.api.run(lambda s: s.scalars(select(AuditEvent).where(AuditEvent.action == ATTEMPT_VIEW)).all())
    assert [(v.actor, v.target, v.details["recording"]) for v in views] == [("user:archivist", "P1", "rec-P1")] * 2


async def test_track_is_one_file_with_byte_ranges_and_audited_from_its_start(world: World) -> None:
    await _attempt(world)
    client, arch = world.api.client, world.headers("archivist")
    whole = b"".join(data for _, data, _, _ in TRACKS["cam1"])
    full = await client.get("/attempts/P1/recordings/rec-P1/cam1", headers=arch)
    assert full.status == 200 and full.headers["Accept-Ranges"] == "bytes" and await full.read() == whole
    # A span across the init file and two media fragments, a suffix, an open end.
    for header, first, last in (("bytes=150-650", 150, 650), ("bytes=-7", len(whole) - 7, len(whole) - 1),
                                ("bytes=500-", 500, len(whole) - 1)):
        part = await client.get("/attempts/P1/recordings/rec-P1/cam1", headers={**arch, "Range": header})
        assert part.status == 206, header
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{len(whole)}"
        assert await part.read() == whole[first : last + 1]
    beyond = await client.get("/attempts/P1/recordings/rec-P1/cam1", headers={**arch, "Range": f"bytes={len(whole)}-"})
    assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{len(whole)}"
    assert (await client.get("/attempts/P1/recordings/rec-P1/cam9", headers=arch)).status == 404
    assert (await client.get("/attempts/P1/recordings/rec-X/cam1", headers=arch)).status == 404

    # Another person's first request is a viewing of its own, even when it skips byte 0.
    skip = await client.get("/attempts/P1/recordings/rec-P1/cam1", headers={**world.headers("examiner"),
                                                                            "Range": "bytes=1-"})
    assert skip.status == 206 and await skip.read() == whole[1:]
    media = world.api.run(lambda s: s.scalars(select(AuditEvent).where(AuditEvent.action == ATTEMPT_MEDIA)).all())
    # The whole file is audited (a new viewing); the later spans of the same viewing, which skip byte 0 (the
    # suffix too: decided on the parsed numbers, it does not reach byte 0 here), are not.
    total = len(whole)
    assert [(m.actor, m.details) for m in media] == [
        ("user:archivist", {"attempt_id": "P1", "track": "cam1", "bytes": [0, total - 1], "of": total}),
        ("user:examiner", {"attempt_id": "P1", "track": "cam1", "bytes": [1, total - 1], "of": total})]
    assert byte_range("bytes=0-", 10) == (0, 9) and byte_range("bytes=0-3,5-6", 10) is None
    assert byte_range(None, 10) is None and byte_range("bytes=00-9", 10) == (0, 9)
    assert byte_range("bytes=-5", 10) == (5, 9) and byte_range("bytes=-50", 10) == (0, 9)
    assert byte_range("bytes=1-", 10) == (1, 9) and byte_range("items=0-1", 10) is None  # an unknown unit: ignored
    for bad in ("bytes=+0-", "bytes= 0-", "bytes=0_0-", "bytes=\u0660-", "bytes=\uff10-", "bytes=-", "bytes=5-1",
                "bytes=0-1,x", "bytes"):
        with pytest.raises(Unsatisfiable):
            byte_range(bad, 10)


async def test_review_link_uses_the_same_page(world: World) -> None:
    await _attempt(world)
    client = world.api.client
    resp = await client.post("/api/attempts/P1/review-links", json={"reviewer": "Апелляционная комиссия",
                                                                      "minutes": 30}, headers=world.headers("admin"))
    url = (await resp.json())["url"]
    text = await (await client.get(url)).text()
    assert 'class="mark-point' in text and f'src="{url}/recordings/rec-P1/cam0"' in text
    assert "Ссылка действует до" in text and "Сидорова" not in text
    part = await client.get(f"{url}/recordings/rec-P1/cam0", headers={"Range": "bytes=10-19"})
    assert part.status == 206 and await part.read() == TRACKS["cam0"][0][1][10:20]


async def test_archive_page_searches_and_links_to_attempts(world: World) -> None:
    await _attempt(world)
    client = world.api.client
    arch = world.headers("archivist")
    text = await (await client.get("/archive?number=2611042&station=S1&from=2026-06-01", headers=arch)).text()
    assert '<a href="/attempts/P1?lang=ru">P1</a>' in text and "2611042" in text and "Сидорова" not in text
    assert 'value="S1" selected' in text
    empty = await (await client.get("/archive?number=000000", headers=arch)).text()
    assert "Ничего не найдено." in empty
    bad = await client.get("/archive?from=01.06.2026", headers=arch)
    assert bad.status == 400 and "query from" in await bad.text()
    assert (await client.get("/archive?lang=en", headers=arch)).status == 200
    for role in ("examiner", "observer", "admin"):
        assert (await client.get("/archive", headers=world.headers(role))).status == 403
