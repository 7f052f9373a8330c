"""An H.265 room camera on the review page in Debian's Chromium, which has no H.265 decoder on Linux: the server
makes an H.264 copy of that track once, in the background, the page says so and plays it in step with the H.264
camera beside it; the copy keeps the recording's clock and fragments, the original stays what is stored, and
the copy goes when the recording is deleted. The recording comes from a real RTSP camera (GStreamer's server)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy import select

from media.calibration import ffmpeg_exe
from media.manifest import read_manifest
from media.rtsp_server import RtspServer
from review_server import auth, retention
from review_server.app import create_app
from review_server.config import ServerConfig
from review_server.migrations import upgrade
from review_server.models import Attempt, ExaminerAssignment, Recording, Rendition, Station, User
from review_server.storage import LocalStorage
from review_server.web import DB, RENDITIONS, STORAGE
from scripts.harness.browser import CHROMIUM_VIDEO_ARGS as CHROMIUM_ARGS
from scripts.harness.browser import chromium_executable
from scripts.harness.server_thread import ServerThread
from tests.media.conftest import rtsp_stand_in
from tests.server.archive_helpers import ROOT

from .test_review_page import _request


class Stack:
    def __init__(self, tmp: Path) -> None:
        rtsp_stand_in()
        self.rec = tmp / "rec"
        mounts = {"main": {"video": "h265", "audio": "alaw", "width": 640, "height": 360, "key_int": 25},
                  "door": {"width": 320, "height": 180, "key_int": 25}}
        with RtspServer(mounts) as cams:
            subprocess.run([sys.executable, "-m", "osce_cli", "record", "--video", "copy:" + cams.url("main"),
                            "--video", "copy:" + cams.url("door"), "--audio", "camera:0", "--seconds", "8",
                            "--out", str(self.rec)], cwd=ROOT, check=True, capture_output=True, timeout=120)
        url = f"sqlite:///{tmp / 'osce.db'}"
        upgrade(url)
        config = ServerConfig(database_url=url, media_dir=tmp / "media", insecure_cookies=True,
                              argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)
        self.app = create_app(config, storage=LocalStorage(config.media_dir))
        self.db, self.storage = self.app[DB], self.app[STORAGE]
        self.server = ServerThread(self.app)
        self.url = self.server.start()
        self.run = self.db.run
        self.run(lambda s: auth.add_user(s, "examiner", "not used here", "examiner"))

        def station(s):  # type: ignore[no-untyped-def]
            st = Station(code="S1", name="S1")
            s.add(st)
            s.flush()
            uid = s.scalar(select(User.id).where(User.login == "examiner"))
            s.add(ExaminerAssignment(user_id=uid, station_id=st.id, exam_day_id=None))
            s.add(Attempt(id="H1", station_id=st.id))
            return auth.issue_station_token(s, st)[0]

        token = self.run(station)
        manifest = read_manifest(self.rec)
        for track in manifest.track_ids():
            for frag in manifest.track_files(track):
                data = (self.rec / frag.file).read_bytes()
                query = "?attempt_id=H1" + (f"&start={frag.start:.6f}&end={frag.end:.6f}" if frag.start is not None
                                             else "")
                status, _ = _request(f"{self.url}/api/recordings/rec-H1/tracks/{track}/fragments/{frag.seq}{query}",
                                     "PUT", data, {"Authorization": f"Bearer {token}",
                                                   "X-Content-SHA256": hashlib.sha256(data).hexdigest()})
                assert status == 201

    def cookie(self) -> dict[str, str]:
        def make(s):  # type: ignore[no-untyped-def]
            user = s.scalar(select(User).where(User.login == "examiner"))
            return auth.create_session(s, user, 3600)[0]

        return {"name": auth.SESSION_COOKIE, "value": self.run(make), "url": self.url}

    def rendition(self) -> Rendition | None:
        return self.run(lambda s: s.scalar(select(Rendition)))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("rendition"))
    try:
        yield s
    finally:
        s.server.stop()
        s.app[RENDITIONS].close()
        s.db.dispose()


def test_the_h265_camera_plays_as_its_h264_copy_beside_the_h264_camera(stack: Stack, tmp_path: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([stack.cookie()])  # type: ignore[list-item]
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            assert page.goto(f"{stack.url}/attempts/H1") is not None
            hevc = 'video/mp4; codecs="hvc1.1.6.L93.B0"'
            assert page.evaluate(f"document.createElement('video').canPlayType('{hevc}')") == "", \
                "this Chromium decodes H.265: the rendition would not be needed"
            caption = page.locator("figure.camera .rendition").first
            assert caption.get_attribute("data-state") == "pending", caption.inner_text()
            assert "готовит копию H.264" in caption.inner_text() and "H.265" in caption.inner_text()
            deadline = time.monotonic() + 120
            while (row := stack.rendition()) is None or row.state != "done":
                assert time.monotonic() < deadline, "the rendition was not made"
                time.sleep(0.5)
            page.reload()
            caption = page.locator("figure.camera .rendition").first
            assert caption.get_attribute("data-state") == "done"
            assert caption.inner_text().startswith("— копия H.264 для просмотра: оригинал записан в H.265")
            sources = page.evaluate("Array.from(document.querySelectorAll('video')).map(v => v.getAttribute('src'))")
            assert sources == ["/attempts/H1/recordings/rec-H1/cam0?rendition=1", "/attempts/H1/recordings/rec-H1/cam1"]
            page.wait_for_function("() => Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 2)",
                                   timeout=20_000)
            assert page.evaluate("Array.from(document.querySelectorAll('video')).map(v => v.videoWidth)") == [640, 320]
            page.click("#play")
            page.wait_for_function("() => document.querySelector('video.master').currentTime > 1.5", timeout=15_000)
            times = "[document.querySelector('video.master').currentTime, document.querySelector('video.slave')" \
                    ".currentTime]"
            seen = []
            for _ in range(8):
                seen.append(page.evaluate(times))
                page.wait_for_timeout(150)
            assert seen[-1][0] > seen[0][0] + 0.5 and max(abs(m - s) for m, s in seen) < 0.1, seen
            page.screenshot(path=str(tmp_path / "rendition.png"), full_page=False)
            page.goto(f"{stack.url}/attempts/H1")  # seen again: nothing made again
            assert errors == []
        finally:
            browser.close()
    assert stack.app[RENDITIONS].made == 1


def test_the_copy_keeps_the_recordings_clock_and_fragments_and_goes_with_the_recording(stack: Stack,
                                                                                        tmp_path: Path) -> None:
    deadline = time.monotonic() + 120
    while (row := stack.rendition()) is None or row.state != "done":
        if row is None:  # this test alone: the page asks for it
            _request(f"{stack.url}/attempts/H1", "GET", b"", {"Cookie": "{name}={value}".format(**stack.cookie())})
        assert time.monotonic() < deadline
        time.sleep(0.5)
    pieces = json.loads(row.pieces)
    original = read_manifest(stack.rec).track_files("cam0")
    assert [p["kind"] for p in pieces] == ["init"] + ["media"] * (len(original) - 1)
    assert [(p["start"], p["end"]) for p in pieces[1:]] == [(f.start, f.end) for f in original[1:]]
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(b"".join(stack.storage.get(p["sha256"]) for p in pieces))
    check = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(copy), "-f", "null", "-"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stderr == "", check.stderr
    with av.open(str(copy)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264" and container.streams.audio  # the sound copied beside it
        first = next(container.decode(video))
    assert abs(float(first.time) - original[1].start) < 0.05, (first.time, original[1].start)  # the recording's clock
    # The originals are untouched, and the copy goes with its recording.
    assert all(stack.storage.exists(f.sha256) for f in original)

    def delete(s):  # type: ignore[no-untyped-def]
        rec = s.scalar(select(Recording).where(Recording.key == "rec-H1"))
        return retention.delete_recording(s, rec, "admin", "test", {})

    deleted = stack.run(delete)
    assert {p["sha256"] for p in pieces} <= set(deleted.orphans)
    assert stack.rendition() is None
