"""The attempt review page in Debian's Chromium: a real two-camera recording (synthetic cameras and microphone,
encoded by the recorder with PyAV) uploaded by a station to a real review server (SQLite), marked, and opened
by an examiner and an archivist. Both cameras play and stay in step, every mark is a point on the timeline and
a click seeks there, the score is the one scores.py computes, no name appears, and the wrong people are kept out.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import pytest
from playwright.sync_api import Page, sync_playwright
from sqlalchemy import select

from checklists.marks import MarkEvent as WireEvent
from media.calibration import ffmpeg_exe
from media.manifest import read_manifest
from review_server import auth
from review_server.app import create_app
from review_server.config import ServerConfig
from review_server.migrations import upgrade
from review_server.models import Attempt, Candidate, CandidatePersonal, ExaminerAssignment, Station, User
from review_server.scores import attempt_outcome
from review_server.storage import LocalStorage
from review_server.web import DB
from scripts.harness.browser import CHROMIUM_VIDEO_ARGS as CHROMIUM_ARGS
from scripts.harness.browser import chromium_executable
from scripts.harness.server_thread import ServerThread
from tests.mark_signing import Signer
from tests.server.archive_helpers import CPR, ROOT, add_schedule, checklist, link_attempt

NUMBER = "2611077"
SECRET_NAME = "Верещагина"
# Marks every 0.25 s from 0.5 s, inside the 6 s recording, so that each one can be seeked to.
OFFSETS = [0.5 + 0.25 * i for i in range(19)]


def _request(url: str, method: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read()


class Stack:
    def __init__(self, tmp: Path, **settings: Any) -> None:  # settings: more ServerConfig keys
        self.rec = rec = tmp / "rec"
        subprocess.run([sys.executable, "-m", "osce_cli", "record", "--video", "synthetic:label=cam0",
                        "--video", "synthetic:seed=2", "--audio", "synthetic", "--seconds", "6", "--size", "320x180",
                        "--out", str(rec)], cwd=ROOT, check=True, capture_output=True, timeout=120)
        url = f"sqlite:///{tmp / 'osce.db'}"
        upgrade(url)
        config = ServerConfig(database_url=url, media_dir=tmp / "media", insecure_cookies=True,
                              argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1, **settings)
        self.app = create_app(config, storage=LocalStorage(config.media_dir))
        self.db = self.app[DB]
        self.server = ServerThread(self.app)
        self.url = self.server.start()
        self.run = self.db.run
        for role in ("examiner", "archivist", "observer"):
            self.run(lambda s, role=role: auth.add_user(s, role, "not used here", role))

        def station(s):  # type: ignore[no-untyped-def]
            st = Station(code="S1", name="S1")
            s.add(st)
            s.add(Station(code="S2", name="S2"))
            s.flush()
            uid = s.scalar(select(User.id).where(User.login == "examiner"))
            s.add(ExaminerAssignment(user_id=uid, station_id=st.id, exam_day_id=None))
            s.add(Attempt(id="E1", station_id=st.id))  # on the schedule (osce server schedule import)
            return auth.issue_station_token(s, st)[0]

        self.token = self.run(station)
        world: Any = SimpleNamespace(api=SimpleNamespace(run=self.run))  # what the archive helpers use
        ids = add_schedule(world)
        self.checklist = checklist(CPR)
        self._upload(rec, "rec-E1", "E1")
        done = set(self.checklist.item_numbers[:15])  # 15 of 19: 78.9 %
        self._marks([self._event(seq, n, n in done, t) for seq, (n, t) in
                     enumerate(zip(self.checklist.item_numbers, OFFSETS, strict=True), start=1)])
        link_attempt(world, "E1", NUMBER, ids, "CPR")

        def personal(s):  # type: ignore[no-untyped-def]
            cand = s.scalar(select(Candidate).where(Candidate.accreditation_number == NUMBER))
            s.add(CandidatePersonal(candidate_id=cand.id, last_name=SECRET_NAME, first_name="Анна"))

        self.run(personal)

    def _event(self, seq: int, item: int, done: bool, offset: float) -> dict[str, Any]:
        return WireEvent.new(attempt_id="E1", station_id="S1", examiner="examiner", kind="mark", item=item,
                             done=done, checklist_hash=self.checklist.content_hash, seq=seq,
                             recording_offset_s=offset).to_json()

    def _marks(self, events: list[dict[str, Any]]) -> None:
        events = Signer(self.run).sign("S1", events)  # as the station's tablet signs them
        body = json.dumps({"events": events}).encode()
        status, _ = _request(self.url + "/api/marks", "POST", body,
                             {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        assert status == 200

    def _upload(self, folder: Path, key: str, attempt_id: str) -> None:
        manifest = read_manifest(folder)
        assert len(manifest.track_ids()) == 2
        for track in manifest.track_ids():
            for frag in manifest.track_files(track):
                data = (folder / frag.file).read_bytes()
                query = f"?attempt_id={attempt_id}"
                if frag.start is not None:
                    query += f"&start={frag.start:.6f}&end={frag.end:.6f}"
                status, _ = _request(
                    f"{self.url}/api/recordings/{key}/tracks/{track}/fragments/{frag.seq}{query}", "PUT", data,
                    {"Authorization": f"Bearer {self.token}", "X-Content-SHA256": hashlib.sha256(data).hexdigest()})
                assert status == 201

    def cookie(self, login: str) -> dict[str, str]:
        def make(s):  # type: ignore[no-untyped-def]
            user = s.scalar(select(User).where(User.login == login))
            return auth.create_session(s, user, 3600)[0]

        return {"name": auth.SESSION_COOKIE, "value": self.run(make), "url": self.url}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("review"))
    try:
        yield s
    finally:
        s.server.stop()
        s.db.dispose()


def test_track_file_is_the_stored_bytes_with_an_index(stack: Stack, tmp_path: Path) -> None:
    """What the players get: the station's bytes untouched, with a sidx per stream after the init file, and it
    decodes and seeks with FFmpeg (the demuxer Chromium uses for a <video src>)."""
    cookie = stack.cookie("archivist")
    req = urllib.request.Request(f"{stack.url}/attempts/E1/recordings/rec-E1/cam1",
                                 headers={"Cookie": f"{cookie['name']}={cookie['value']}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        served = resp.read()
    boxes, i = [], 0
    while i < len(served):
        size = int.from_bytes(served[i : i + 4], "big")
        boxes.append((served[i + 4 : i + 8].decode(), i, size))
        i += size
    assert [b[0] for b in boxes[:5]] == ["ftyp", "moov", "sidx", "sidx", "moof"]  # video and audio
    without_index = b"".join(served[at : at + size] for kind, at, size in boxes if kind != "sidx")
    stored = read_manifest(stack.rec).track_files("cam1")
    assert without_index == b"".join((stack.rec / f.file).read_bytes() for f in stored)
    path = tmp_path / "cam1.mp4"
    path.write_bytes(served)
    decoded = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
                             capture_output=True, text=True, timeout=60)
    assert decoded.returncode == 0 and decoded.stderr == "", decoded.stderr
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        container.seek(int(5.0 / video.time_base), stream=video)  # to the key frame before: 4.0x s
        frame = next(container.decode(video))
        assert 4.0 <= float(frame.time) <= 5.0, frame.time


TIMES = "[document.querySelector('video.master').currentTime, document.querySelector('video.slave').currentTime]"


def _check_playback_and_seeking(page: Page) -> None:
    page.wait_for_function("() => Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 2)",
                           timeout=20_000)
    assert page.evaluate("Array.from(document.querySelectorAll('video')).map(v => v.videoWidth)") == [320, 320]
    page.click("#play")
    page.wait_for_function("() => document.querySelector('video.master').currentTime > 1.0", timeout=10_000)
    diffs, seen = [], []
    for _ in range(12):  # 1.8 s of playback, sampled
        master, slave = page.evaluate(TIMES)
        diffs.append(abs(master - slave))
        seen.append((master, slave))
        page.wait_for_timeout(150)
    assert seen[-1][0] > seen[0][0] + 1.0 and seen[-1][1] > seen[0][1] + 1.0, seen  # both cameras advance
    assert max(diffs) < 0.1, diffs
    frames = page.evaluate("Array.from(document.querySelectorAll('video')).map(v => "
                           "v.getVideoPlaybackQuality().totalVideoFrames)")
    assert min(frames) > 10, frames

    points = page.locator(".timeline .mark-point")
    assert points.count() == len(OFFSETS)
    page.evaluate("document.querySelector('video.master').pause()")
    for index in (3, 14):  # back and forth
        target = float(points.nth(index).get_attribute("data-t") or "nan")
        assert target == pytest.approx(OFFSETS[index], abs=1e-3)
        points.nth(index).click()
        page.wait_for_function(
            f"() => {{ const v = document.querySelector('video.master'); return !v.seeking && "
            f"Math.abs(v.currentTime - {target}) <= 0.5; }}", timeout=10_000)
        page.wait_for_function(f"() => Math.abs(document.querySelector('video.slave').currentTime - {target}) <= .5",
                               timeout=5_000)


def test_examiner_watches_both_cameras_in_step_and_seeks_by_marks(stack: Stack) -> None:
    executable = chromium_executable()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([stack.cookie("examiner")])  # type: ignore[list-item]
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            resp = page.goto(f"{stack.url}/attempts/E1")
            assert resp is not None and resp.status == 200
            html = page.content()
            assert NUMBER in html and SECRET_NAME not in html and "Анна" not in html
            _check_playback_and_seeking(page)

            out = stack.run(lambda s: attempt_outcome(s, "E1"))
            result = page.locator(".score .result")
            assert float(result.get_attribute("data-percent") or "nan") == out.percent
            assert f"{out.percent:.1f}".replace(".", ",") + " % — " + out.result in result.inner_text()
            assert out.result == "сдано" and out.scores["examiner"].done == 15
            assert errors == []

            # An observer may watch video but not marks: refused. Nobody signed in: sent to the login page.
            observer = browser.new_context()
            observer.add_cookies([stack.cookie("observer")])  # type: ignore[list-item]
            refused = observer.new_page().goto(f"{stack.url}/attempts/E1")
            assert refused is not None and refused.status == 403
            anonymous = browser.new_context().new_page()
            anonymous.goto(f"{stack.url}/attempts/E1")
            assert anonymous.url == f"{stack.url}/login"
        finally:
            browser.close()


def test_archivist_finds_the_attempt_and_opens_it(stack: Stack) -> None:
    executable = chromium_executable()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1024, "height": 768})  # a tablet
            context.add_cookies([stack.cookie("archivist")])  # type: ignore[list-item]
            page = context.new_page()
            page.goto(f"{stack.url}/archive")
            page.fill("input[name=number]", NUMBER)
            page.select_option("select[name=station]", "S1")
            page.click("form.search button[type=submit]")
            page.click("table.results a[href^='/attempts/E1']")
            page.wait_for_url(f"{stack.url}/attempts/E1?lang=ru")
            assert SECRET_NAME not in page.content()
            _check_playback_and_seeking(page)
        finally:
            browser.close()
