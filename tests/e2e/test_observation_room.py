"""The observation room on the real demo stack (review_server/demo.py: `osce server run` and three `osce agent run`
processes, real accounts and sessions), in Debian's headless Chromium: every station plays with sound, an examiner
enlarges one and marks its checklist with the keyboard, and the marks reach the station's journal and its tablet
page through the server (one source of truth)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from review_server.demo import Demo, DemoSettings, prepare
from scripts.harness.browser import CHROMIUM_VIDEO_ARGS as CHROMIUM_ARGS
from scripts.harness.browser import chromium_executable
from scripts.harness.ports import free_ports as _free_ports


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    ports = _free_ports(7)
    settings = DemoSettings(folder=tmp_path_factory.mktemp("demo") / "demo", port=ports[0],
                            agent_ports=(ports[1], ports[2], ports[3]), marking_ports=(ports[4], ports[5], ports[6]),
                            start_in_s=3, reading_s=5, performing_s=300, width=320, height=180,
                            argon2_memory_kib=8192, camera_faults={"st3": "freeze_after_s=6"})
    d = prepare(settings)
    d.start()
    supervisor = d.supervise_in_background()  # restarts a crashed agent, as systemd would in a room
    try:
        yield d
    finally:
        supervisor.set()
        d.stop()
    codes = {name: p.returncode for name, p in d.processes.items()}
    assert all(code == 0 for code in codes.values()), codes  # Ctrl-C (SIGINT) stops every part cleanly
    if d.restarts:  # known: media/live.py can abort at a live stream's start (ffmpeg movenc next_dts >= 0)
        print(f"agents restarted during the test: {d.restarts}")


def _journal(demo: Demo, station: str) -> list[tuple[dict, bool]]:
    path = next(a for a in demo.agents if a.station == station).journal
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [(json.loads(body), bool(synced)) for body, synced in db.execute("SELECT body, synced FROM mark_events")]


def _plays(page: Page, selector: str) -> None:
    page.wait_for_function(f"() => {{ const v = document.querySelector('{selector}');"
                           " return !!v && v.getVideoPlaybackQuality().totalVideoFrames > 5; }", timeout=20000)
    js = f"""() => {{ const v = document.querySelector('{selector}');
        return [v.currentTime, v.getVideoPlaybackQuality().totalVideoFrames, v.webkitAudioDecodedByteCount]; }}"""
    t0, f0, _ = page.evaluate(js)
    page.wait_for_timeout(1500)
    t1, f1, audio_bytes = page.evaluate(js)
    assert t1 - t0 > 0.8, (selector, t0, t1)
    assert f1 > f0 + 10, (selector, f0, f1)
    assert audio_bytes > 0, selector  # the AAC track is there and decoded


def test_examiner_watches_every_station_and_marks_beside_the_live_picture(demo: Demo) -> None:
    executable = chromium_executable()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(demo.url + "/login")
            page.fill("input[name=login]", "examiner1")
            page.fill("input[name=password]", demo.password)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/login" not in url)  # each role lands on its own home page
            page.goto(demo.url + "/live")

            # The grid: every demo station, playing picture and sound.
            for agent in demo.agents:
                tile = page.locator(f'.tile[data-station="{agent.station}"]')
                expect(tile.locator(".name")).to_have_text(agent.name, timeout=15000)
                expect(tile.locator(".rec")).to_be_visible(timeout=15000)
                expect(tile.locator(".candidate")).to_contain_text("Кандидат № 26110")
            for agent in demo.agents:
                _plays(page, f'.tile[data-station="{agent.station}"] video')
            expect(page.locator('.tile[data-station="st1"] .phase')).to_contain_text("выполнение", timeout=10000)
            # Health from the agents: st3's camera stops changing (a synthetic fault), the grid shows a badge.
            frozen = page.locator('.tile[data-station="st3"] .badge[data-code="camera_frozen"]')
            expect(frozen).to_contain_text("Камера cam0: изображение застыло", timeout=20000)
            expect(page.locator('.tile[data-station="st2"] .badge')).to_have_count(0)

            # Enlarged: the CPR station with its two cameras, heard (gain 1, the level meter moves), the others not.
            page.locator('.tile[data-station="st1"] video').click()
            expect(page.locator("#overlay")).to_be_visible()
            expect(page.locator("#big-cameras button")).to_have_count(2)
            _plays(page, "#big-slot video")
            page.wait_for_function("audioCtx.state === 'running' && tiles.get('st1').gain.gain.value === 1"
                                   " && tiles.get('st2').gain.gain.value === 0"
                                   " && !document.querySelector('#big-slot video').muted", timeout=5000)
            page.wait_for_function("Number(tiles.get('st1').el.dataset.peak || 0) > 30", timeout=5000)

            # Marking beside it, with the keyboard: item 2 "yes", item 3 "no".
            items = page.locator("#items li")
            expect(items.first).to_be_visible(timeout=10000)
            assert items.count() >= 10
            expect(page.locator("#sheet-attempt")).to_contain_text("Попытка demo-st1-1")
            expect(page.locator("#panel .keys")).to_contain_text("Y")
            page.keyboard.press("ArrowDown")
            expect(page.locator("#items li.current")).to_have_attribute("data-item", "2")
            page.keyboard.press("KeyY")
            page.keyboard.press("0")
            expect(page.locator("#sheet-sync")).to_have_text("Сохранено на сервере: 2", timeout=15000)
            expect(page.locator('#items li[data-item="2"] .yes')).to_have_attribute("aria-pressed", "true")
            expect(page.locator('#items li[data-item="3"] .no')).to_have_attribute("aria-pressed", "true")
            expect(page.locator("#items li.current")).to_have_attribute("data-item", "4")
            # The CPR station's live figures (its top camera sees compressions at 110/min); only there.
            expect(page.locator('.tile[data-station="st1"] .cpr')).to_contain_text(
                re.compile(r"СЛР: \d+ в мин · \d+ компрессий"), timeout=20000)
            expect(page.locator('.tile[data-station="st2"] .cpr')).to_have_text("")
            assert errors == []
        finally:
            browser.close()

    # The marks reach the station: its journal holds them as synced (never sent back), and its tablet page shows them.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        marks = {(e["item"], e["done"]): synced for e, synced in _journal(demo, "st1")
                 if e["examiner"] == "examiner1" and e["attempt_id"] == "demo-st1-1"}
        if len(marks) >= 2:
            break
        time.sleep(0.5)
    assert marks == {(2, True): True, (3, False): True}, marks
    assert _journal(demo, "st2") == []  # another station's journal is not touched

    st1 = next(a for a in demo.agents if a.station == "st1")
    tablet, pin = st1.marking_url, st1.pins["examiner1"]  # the PIN the server issued for st1 today
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    login = urllib.request.Request(tablet + "api/login", data=json.dumps({"examiner": "examiner1", "pin": pin})
                                   .encode(), headers={"Content-Type": "application/json"})
    opener.open(login, timeout=5).close()
    with opener.open(tablet + "api/state", timeout=5) as r:
        state = json.loads(r.read())
    assert state["attempt_id"] == "demo-st1-1"
    assert state["sheet"]["marks"] == {"2": True, "3": False}


def test_demo_writes_each_program_its_own_configuration(demo: Demo) -> None:
    server_toml = (demo.folder / "server.toml").read_text(encoding="utf-8")
    assert "sqlite:///" in server_toml and "insecure_cookies = true" in server_toml
    day = json.loads((demo.folder / "day.json").read_text(encoding="utf-8"))["attempts"]
    assert {a["station_id"] for a in day} == {"st1", "st2", "st3"} and len(day) == 9
    cpr = [a for a in demo.agents if "[cpr]" in (a.folder / "agent.toml").read_text(encoding="utf-8")]
    assert [a.station for a in cpr] == ["st1"]  # one CPR station, with a second camera
    assert (Path(cpr[0].folder) / "agent.toml").read_text(encoding="utf-8").count("[[cameras]]") == 2
    # The injection room films with a real RTSP camera (GStreamer's server is installed here, as setup.sh does):
    # H.265 recorded by copy, the camera's microphone as the sound, its sub-stream in the live grid.
    assert demo.camera is not None
    rtsp = (next(a for a in demo.agents if a.station == "st2").folder / "agent.toml").read_text(encoding="utf-8")
    assert 'source = "rtsp://127.0.0.1:' in rtsp and 'source = "camera:0"' in rtsp and "sub_stream" in rtsp
    assert "password_file" in rtsp and "demo-camera" not in rtsp  # the camera's password is in a file of its own
    assert oct((demo.folder / "password").stat().st_mode & 0o777) == "0o600"
    assert oct((demo.folder / "tablet-pins").stat().st_mode & 0o777) == "0o600"
