"""Identification on the picture (issue 19) in Debian's Chromium, on a real server (SQLite) with a real recording and
a real live stream: the centre (region, code, name), the room, the station and the accreditation number (never the
name) and the frame's own date and time over the live tile, the enlarged view and the review page's cameras, the
live HLS output's WebVTT subtitles read by ffmpeg, and the stored fragments untouched. Screenshots are kept
(the folder is printed; OSCE_SCREENSHOTS_OUT chooses it)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import subprocess
import threading
import time
import urllib.request
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import select

from media import clock as media_clock
from media.calibration import ffmpeg_exe
from media.recorder import Recorder, RecorderConfig, SourceConfig
from media.track import EncodeSettings
from review_server.attempt_view import marks_zero
from review_server.live import LIVE_HUB, LiveHub
from review_server.models import Fragment, Recording, Station
from review_server.web import STORAGE
from scripts.harness.browser import CHROMIUM_VIDEO_ARGS as CHROMIUM_ARGS
from scripts.harness.browser import chromium_executable
from station_agent.live_publisher import LivePublisher
from tests.e2e.page_checks import screenshot_folder
from tests.e2e.test_review_page import NUMBER, SECRET_NAME, Stack

CENTRE = {"centre_region": "77 г. Москва", "centre_code": "ППЭ 0001", "centre_name": "Демо-центр аккредитации"}
MSK = zoneinfo.ZoneInfo("Europe/Moscow")
CLOCK_RE = re.compile(r"(\d\d)\.(\d\d)\.(\d{4}) (\d\d):(\d\d):(\d\d)")
WHERE = f"ауд. 101 · ст. S1 · № {NUMBER}"


class IdentStack(Stack):
    """The review page's stack (an uploaded two-camera recording of E1 at S1, candidate NUMBER with a name on file)
    with the centre configured, S1 in room 101, the recording's media_from known, and S1 broadcasting live."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, **CENTRE)

        def setup(s):  # type: ignore[no-untyped-def]
            s.scalar(select(Station).where(Station.code == "S1")).room = "101"
            # As the station sends it with the init files: media time 0 on its clock, where its marks count from.
            zero = marks_zero(s, "E1")
            s.scalar(select(Recording).where(Recording.key == "rec-E1")).media_from = zero
            return zero, {f.sha256 for f in s.scalars(select(Fragment))}

        self.media_from, self.stored = self.run(setup)
        assert self.media_from is not None
        self.publisher = LivePublisher(self.url, "S1", self.token)
        self._thread = threading.Thread(target=lambda: asyncio.run(self.publisher.run()), daemon=True)
        self._thread.start()
        self.recorder = Recorder(RecorderConfig(
            out_dir=tmp / "live", videos=[SourceConfig("synthetic:label=S1 cam0"), SourceConfig("synthetic:seed=2")],
            audio=SourceConfig("synthetic"), width=320, height=180, station="S1", encode=EncodeSettings(crf=20),
            live=self.publisher.attach))
        self.recorder.start()
        # As the agent does (station_agent/recording.py): media time 0 on the station's (here: this) clock.
        origin = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.recorder.origin - media_clock.now())
        self.publisher.set_meta(station_name="Станция 1", candidate=NUMBER, recording=True,
                                media_from=origin.isoformat())

    def hub(self) -> LiveHub:
        return self.app[LIVE_HUB]

    def close(self) -> None:
        self.recorder.stop()
        self.publisher.stop()
        self._thread.join(10)
        self.server.stop()
        self.db.dispose()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentStack]:
    s = IdentStack(tmp_path_factory.mktemp("ident"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_folder(tmp_path_factory, "ident-screenshots")


def _clock(text: str) -> dt.datetime:
    m = CLOCK_RE.search(text)
    assert m, text
    d, mo, y, h, mi, s = (int(x) for x in m.groups())
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=MSK)


def _check_overlay(page: Page, box: str, video: str) -> str:
    """The overlay's three lines over the video's top left, clear of its centre; returns its text."""
    overlay = page.locator(f"{box} .ident")
    expect(overlay).to_be_visible()
    expect(overlay.locator("div")).to_have_count(3, timeout=15_000)  # the time line once the picture runs
    lines = overlay.locator("div").all_inner_texts()
    assert lines[0] == "77 г. Москва · ППЭ 0001 Демо-центр аккредитации" and lines[1] == WHERE, lines
    text = overlay.inner_text()
    assert SECRET_NAME not in text and "Анна" not in text
    o, v = overlay.bounding_box(), page.locator(video).bounding_box()
    assert o and v
    assert abs(o["x"] - v["x"]) < 2 and abs(o["y"] - v["y"]) < 2  # at the picture's top left
    assert o["x"] + o["width"] < v["x"] + 0.8 * v["width"] and o["y"] + o["height"] < v["y"] + 0.45 * v["height"]
    # Every line visible whole or cut at its end, and readable: at least 11 px.
    size = page.evaluate(f"() => parseFloat(getComputedStyle(document.querySelector('{box} .ident')).fontSize)")
    assert size >= 11, size
    return lines[2]


def test_identification_over_live_tile_enlarged_view_and_review_player(stack: IdentStack, shots: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([stack.cookie("examiner")])  # type: ignore[list-item]
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            # The live tile (320 px wide and up): the frame's own time, the live picture's, close to now.
            page.goto(f"{stack.url}/live")
            tile = '.tile[data-station="S1"]'
            page.wait_for_function(f"() => document.querySelector('{tile} video').getVideoPlaybackQuality()"
                                   ".totalVideoFrames > 5", timeout=20_000)
            expect(page.locator(f"{tile} video")).not_to_have_class(re.compile("joining"))  # at the live edge
            shown = _clock(_check_overlay(page, tile, f"{tile} video"))
            assert abs((shown - dt.datetime.now(dt.UTC)).total_seconds()) < 4, shown
            # It is the picture's time: the frame on screen is the live edge's, a cushion behind the newest frame
            # the station sent (the server's channel knows its recording-clock time), on the station's media_from.
            at = page.evaluate(f"""() => {{ const v = document.querySelector('{tile} video'), b = v.buffered;
                return [b.end(b.length - 1) - v.currentTime,
                        document.querySelector('{tile} .ident div:last-child').textContent]; }}""")
            newest = stack.hub().channels[("S1", "cam0")].last_t
            media_from = dt.datetime.fromisoformat(stack.publisher._meta["media_from"])
            frame = media_from + dt.timedelta(seconds=newest - at[0])
            assert -1.6 < (_clock(at[1]) - frame).total_seconds() < 1.01, (at, newest, frame)
            page.locator(tile).screenshot(path=shots / "ident-live-tile.png")

            # The enlarged view: the same identification, larger, still at the top left; the seconds run.
            page.locator(tile).click()
            expect(page.locator("#overlay")).to_be_visible()
            first = _clock(_check_overlay(page, "#big-slot .tile", "#big-slot video"))
            assert page.evaluate(
                "() => parseFloat(getComputedStyle(document.querySelector('#big-slot .ident')).fontSize)") > 11
            page.wait_for_timeout(1600)
            later = _clock(page.locator("#big-slot .ident div").nth(2).inner_text())
            assert 1 <= (later - first).total_seconds() <= 3, (first, later)
            page.screenshot(path=shots / "ident-live-enlarged.png")

            # The review page: each camera carries it; the time is the frame's, moving with a seek, not with the clock.
            page.goto(f"{stack.url}/attempts/E1")
            page.wait_for_function("() => Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 2)",
                                   timeout=20_000)
            expect(page.locator("figure.camera .ident")).to_have_count(2)
            frac = stack.media_from.microsecond / 1e6
            for at_s in (2.5 - frac, 4.5 - frac):  # mid-second on the wall: the frame's second is unambiguous
                want = (stack.media_from + dt.timedelta(seconds=at_s)).astimezone(MSK).strftime("%d.%m.%Y %H:%M:%S")
                page.evaluate(f"() => {{ const v = document.querySelector('video.master'); v.pause(); "
                              f"v.currentTime = {at_s}; }}")
                page.wait_for_function(f"() => Array.from(document.querySelectorAll('video')).every(v => "
                                       f"!v.seeking && Math.abs(v.currentTime - {at_s}) < 0.05)", timeout=10_000)
                for i in range(2):
                    box = f"figure.camera:nth-of-type({i + 1})"
                    expect(page.locator(f"{box} .ident div").nth(2)).to_have_text(want)
                    _check_overlay(page, box, f"{box} video")
            page.locator("section.media").screenshot(path=shots / "ident-review.png")
            assert errors == []
        finally:
            browser.close()


def test_live_hls_carries_the_identification_as_webvtt(stack: IdentStack) -> None:
    cookie = stack.cookie("examiner")
    req = urllib.request.Request(f"{stack.url}/api/live/S1/cam0/hls",
                                 headers={"Cookie": f"{cookie['name']}={cookie['value']}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        master = stack.url + json.loads(r.read())["master_url"]
    playlist = master.replace("master.m3u8", "ident.m3u8")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with urllib.request.urlopen(playlist, timeout=5) as r:
            if r.read().decode().count("#EXTINF") >= 2:
                break
        time.sleep(0.5)
    with urllib.request.urlopen(master, timeout=5) as r:
        text = r.read().decode()
    assert 'TYPE=SUBTITLES' in text and 'SUBTITLES="ident"' in text, text
    # ffmpeg, as an HLS player, opens the master playlist and reads the subtitle rendition beside the picture.
    run = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", master, "-map", "0:s:0", "-t", "3",
                          "-f", "webvtt", "-"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "77 г. Москва · ППЭ 0001 Демо-центр аккредитации" in run.stdout and WHERE in run.stdout, run.stdout
    times = [_clock(m.group(0)) for m in CLOCK_RE.finditer(run.stdout)]
    assert times and all(abs((t - dt.datetime.now(dt.UTC)).total_seconds()) < 30 for t in times), times
    assert SECRET_NAME not in run.stdout


def test_stored_fragments_are_untouched(stack: IdentStack) -> None:
    """After the pages, the players and the HLS output: every stored fragment is the station's bytes, unchanged."""
    storage = stack.app[STORAGE]
    stored = stack.run(lambda s: {f.sha256 for f in s.scalars(select(Fragment))})
    assert stored == stack.stored
    for key in stored:
        with storage.open(key) as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == key
    originals = [f for f in stack.rec.rglob("*") if f.suffix in (".mp4", ".m4s")]  # the two inits may be equal
    assert len(originals) >= len(stored) > 4
    assert {hashlib.sha256(f.read_bytes()).hexdigest() for f in originals} == stored
