"""A time-limited, audited link for an appeal reviewer: one attempt's video and marks, no account needed."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from review_server.models import AuditEvent, ReviewLink
from scripts.harness.browser import CHROMIUM_ARGS, chromium_executable
from scripts.harness.fmp4_bytes import init_bytes, media_bytes

from .archive_helpers import (
    CPR,
    add_schedule,
    checklist,
    events,
    link_attempt,
    make_recording,
    post_marks,
    upload_recording,
)
from .conftest import World


async def test_review_link_shows_video_and_marks_until_it_expires(world: World) -> None:
    ids = add_schedule(world)
    world.schedule("V1")
    cl = checklist(CPR)
    client = world.api.client
    blobs = [init_bytes(), media_bytes(350, seed=1), media_bytes(350, seed=2)]
    for seq, data in enumerate(blobs):
        resp = await client.put(
            f"/api/recordings/rec-V1/tracks/cam0/fragments/{seq}?attempt_id=V1",
            data=data,
            headers={**world.headers("station"), "X-Content-SHA256": hashlib.sha256(data).hexdigest()},
        )
        assert resp.status == 201
    await post_marks(world, events("V1", "S1", cl, set(cl.item_numbers[:15])))
    link_attempt(world, "V1", "2611007", ids, "CPR")
    admin = world.headers("admin")
    resp = await client.post(
        "/api/attempts/V1/review-links", json={"reviewer": "Иванова И.И.", "minutes": 60}, headers=admin
    )
    assert resp.status == 201
    link = await resp.json()

    page = await client.get(link["url"])  # no cookie, no token header: the link is the credential
    assert page.status == 200
    text = await page.text()
    assert "2611007" in text and "15 из 19" in text and f"{link['url']}/recordings/rec-V1/cam0" in text
    video = await client.get(f"{link['url']}/recordings/rec-V1/cam0")
    assert video.status == 200 and video.headers["Content-Type"] == "video/mp4"
    assert await video.read() == b"".join(blobs)
    assert (await client.get(f"{link['url']}/recordings/rec-OTHER/cam0")).status == 404
    assert (await client.get("/review/" + "B" * 43)).status == 404
    assert (await client.get("/review/../../etc")).status == 404

    actions = world.api.run(
        lambda s: [
            (e.action, e.actor) for e in s.scalars(select(AuditEvent).where(AuditEvent.target.in_(["V1", "rec-V1"])))
        ]
    )
    assert ("review_link.issue", "user:admin") in actions
    assert (f"review-link:{link['id']}:Иванова И.И.") in {a for k, a in actions if k == "review_link.view"}
    assert any(k == "review_link.media" for k, _ in actions)

    # Expired: 410, and nothing is served.
    def expire(s):  # type: ignore[no-untyped-def]
        s.get(ReviewLink, link["id"]).expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)

    world.api.run(expire)
    assert (await client.get(link["url"])).status == 410
    assert (await client.get(f"{link['url']}/recordings/rec-V1/cam0")).status == 410

    second = await (
        await client.post("/api/attempts/V1/review-links", json={"reviewer": "Петров", "minutes": 5}, headers=admin)
    ).json()
    assert (await client.get(second["url"])).status == 200
    assert (await client.delete(f"/api/review-links/{second['id']}", headers=admin)).status == 200
    assert (await client.get(second["url"])).status == 410
    bad = await client.post("/api/attempts/V1/review-links", json={"reviewer": "x", "minutes": 0}, headers=admin)
    assert bad.status == 422 and (await bad.json())["where"] == "minutes"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_recording(tmp_path_factory.mktemp("rec") / "r")


async def test_review_page_plays_in_chromium(world: World, recording: Path) -> None:
    """The reviewer's page in Debian's Chromium: the video loads (6 s) beside the marks."""
    from playwright.async_api import async_playwright

    ids = add_schedule(world)
    world.schedule("W1")
    cl = checklist(CPR)
    await upload_recording(world, recording, "rec-W1", "W1")
    await post_marks(world, events("W1", "S1", cl, set(cl.item_numbers[:10])))
    link_attempt(world, "W1", "2611010", ids, "CPR")
    resp = await world.api.client.post(
        "/api/attempts/W1/review-links", json={"reviewer": "Комиссия", "minutes": 10}, headers=world.headers("admin")
    )
    url = str(world.api.client.make_url((await resp.json())["url"]))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(url)
            await page.wait_for_function("() => document.querySelector('video').readyState >= 1", timeout=20_000)
            size = await page.evaluate(
                "[document.querySelector('video').videoWidth, document.querySelector('video').videoHeight]"
            )
            # Play it through (muted, fast): the whole recording decodes, to its last frame.
            await page.evaluate(
                "const v = document.querySelector('video'); v.muted = true; v.playbackRate = 4; v.play()"
            )
            await page.wait_for_function("() => document.querySelector('video').ended", timeout=30_000)
            duration = await page.evaluate("document.querySelector('video').currentTime")
            body = await page.inner_text("body")
        finally:
            await browser.close()
    assert 5.0 < duration < 8.0 and size == [320, 180]
    assert "10 из 19" in body and cl.item(1).action[:20] in body
