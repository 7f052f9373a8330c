"""Readiness checks with a real agent (`osce agent run`) and a real review server, both as processes on sockets:
the admin asks, the agent takes the check over its long poll, records on its configured sources, uploads over tus
and reports; the server's judgement is read back as the page shows it. Synthetic sources here (their faults:
a frozen picture, a muted microphone), a camera that does not exist, and a black network camera by stream copy
(ffmpeg over UDP). The PulseAudio microphone and the page in Chromium: tests/e2e/test_readiness_page.py."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from media.calibration import ffmpeg_exe
from media.manifest import read_manifest
from media.readiness_report import Refusal
from review_server.db import Database
from review_server.models import Fragment, ReadinessFragment, Recording
from scripts.harness.ports import free_udp_port
from scripts.harness.review import add_session, add_station, migrated_database
from station_agent.lifecycle import Attempt
from station_agent.readiness import planned, refusal

from .conftest import Daemon, ReviewProcess, free_port, write_config


@dataclass
class Admin:
    url: str
    cookie: str

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        headers = {"Cookie": self.cookie, "Accept": "application/json"}
        with opener.open(urllib.request.Request(self.url + "/api/me", headers=headers), timeout=10) as r:
            headers["X-CSRF-Token"] = json.loads(r.read())["csrf_token"]
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            with opener.open(urllib.request.Request(self.url + path, data=data, method=method, headers=headers),
                             timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def check(self, *stations: str, timeout: float = 90) -> dict[str, dict[str, Any]]:
        """Run a check of `stations`, wait for it, and give each station's latest check as the page shows it."""
        status, run = self.call("POST", "/api/readiness/runs", {"stations": list(stations)})
        assert status == 201, run
        deadline = time.monotonic() + timeout
        while not self.call("GET", f"/api/readiness/runs/{run['id']}")[1]["finished"]:
            assert time.monotonic() < deadline, f"readiness run {run['id']} not finished in {timeout} s"
            time.sleep(0.5)
        board = self.call("GET", "/api/readiness")[1]
        return {st["code"]: st["check"] for st in board["stations"] if st["code"] in stations}


def results(check: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{r['label']} {r['subject']}".strip(): r for r in check["results"]}


def reds(check: dict[str, Any]) -> dict[str, list[str]]:
    return {name: r["reasons"] for name, r in results(check).items() if r["ok"] is False}


@dataclass
class Stack:
    db_url: str
    server: ReviewProcess
    admin: Admin
    token: str


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    db_url = migrated_database(tmp_path / "server" / "osce.db")
    token = add_station(db_url, "st1", "Станция 1")
    server = ReviewProcess(db_url, tmp_path / "server" / "media", free_port(), tmp_path / "server.log")
    server.start()
    try:
        yield Stack(db_url, server, Admin(server.url, add_session(db_url, "admin", "admin")), token)
    finally:
        server.stop()


def agent(tmp_path: Path, stack: Stack, **config: Any) -> Daemon:
    daemon = Daemon(write_config(tmp_path, extra=f'[server]\nurl = "{stack.server.url}"\n', **config))
    daemon.start({"OSCE_STATION_TOKEN": stack.token})
    return daemon


def test_a_green_check_and_a_refusal_during_an_attempt(tmp_path: Path, stack: Stack) -> None:
    daemon = agent(tmp_path, stack)
    try:
        check = stack.admin.check("st1")["st1"]
        assert (check["state"], check["ok"], reds(check)) == ("done", True, {})
        seen = results(check)
        assert seen["Камера 0 · synthetic"]["value"].startswith(("25 кадр/с", "24,"))
        assert "порог тишины комнаты -60 дБ" in seen["Микрофон synthetic"]["value"]
        # The synthetic camera and microphone flash and beep on one clock: the sync is measured, near zero.
        assert seen["Синхронизация звука и видео cam0"]["ok"] is True
        assert "пар меток" in seen["Синхронизация звука и видео cam0"]["value"]
        # Every fragment of the test recording is on the server under its SHA-256, apart from candidates' media.
        folder = tmp_path / "data" / "readiness" / f"readiness-{check['id']}"
        manifest = read_manifest(folder)
        db = Database(stack.db_url)
        try:
            held = db.run(lambda s: {(f.track, f.seq): f.sha256 for f in s.scalars(select(ReadinessFragment))})
            others = db.run(lambda s: (s.scalar(select(func.count()).select_from(Recording)),
                                       s.scalar(select(func.count()).select_from(Fragment))))
        finally:
            db.dispose()
        assert held == {(f.track, f.seq): f.sha256 for f in manifest.fragments} and len(held) >= 6
        media = tmp_path / "server" / "media"
        for sha in held.values():
            blob = next(media.rglob(sha))
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha
        assert others == (0, 0)
        assert not (tmp_path / "data" / "recordings").exists() or not any((tmp_path / "data" / "recordings").iterdir())

        # During an attempt the agent refuses, naming the attempt; nothing is recorded.
        status, body = daemon.request("POST", "/api/attempt/start",
                                      {"candidate": "2611001", "attempt_id": "d1-st1-001", "performing_s": 120},
                                      token=stack.token)
        assert status == 200, body
        time.sleep(3)  # in its reading phase
        refused = stack.admin.check("st1")["st1"]
        assert refused["state"] == "refused" and refused["ok"] is False
        (reason,) = reds(refused)["Агент станции"]
        assert reason.startswith("идёт попытка d1-st1-001 (") and "во время экзамена проверка не выполняется" in reason
        assert not (tmp_path / "data" / "readiness" / f"readiness-{refused['id']}").exists()
    finally:
        daemon.stop()


def test_each_source_fault_is_red_with_its_reason(tmp_path: Path, stack: Stack) -> None:
    """A frozen camera, a camera that is not there, a black network camera by stream copy and a muted microphone,
    all in one room: each is red with its own reason, and the rest of the check still runs."""
    port = free_udp_port()
    black = subprocess.Popen([ffmpeg_exe(), "-v", "error", "-re", "-f", "lavfi", "-i", "color=c=black:s=320x180:r=25",
                              "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "25",
                              "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"], stdin=subprocess.DEVNULL)
    copy = f"copy:udp://127.0.0.1:{port}?fifo_size=1000000&overrun_nonfatal=1"
    daemon = agent(tmp_path, stack, cameras=("synthetic:freeze_after_s=0", "/dev/video7", copy),
                   microphone="synthetic:mute_after_s=0")
    try:
        check = stack.admin.check("st1")["st1"]
    finally:
        daemon.stop()
        black.terminate()
        black.wait(timeout=10)
    found = reds(check)
    assert set(found) == {"Камера 0 · synthetic:freeze_after_s=0", "Камера 1 · /dev/video7", f"Камера 2 · {copy}",
                          "Микрофон synthetic:mute_after_s=0"}, check["results"]
    assert found["Камера 0 · synthetic:freeze_after_s=0"][0].startswith("изображение застыло (")
    assert found["Камера 1 · /dev/video7"] == ["камера не открылась"]
    assert "/dev/video7" in results(check)["Камера 1 · /dev/video7"]["detail"]
    assert found[f"Камера 2 · {copy}"][0].startswith("чёрное изображение (яркость ")
    assert found["Микрофон synthetic:mute_after_s=0"][0].startswith("тишина: уровень -120 дБ ниже порога")
    assert results(check)["Загрузка на сервер"]["ok"] is True and results(check)["Тестовая запись"]["ok"] is True


NOW = datetime(2026, 7, 1, 6, 0, tzinfo=UTC)


def attempt(attempt_id: str, starts_in_s: float, reading_s: float = 60, performing_s: float = 540) -> Attempt:
    return Attempt(attempt_id, "2611001", "st1", "cpr", NOW + timedelta(seconds=starts_in_s), reading_s, performing_s)


def test_no_check_during_an_attempt_or_just_before_one() -> None:
    later, soon = attempt("d1-st1-002", 120), attempt("d1-st1-001", 40)
    done, running = attempt("d1-st1-000", -1000), attempt("d1-st1-003", -30)
    assert refusal(None, [done, later], NOW, 10) is None  # 120 s away: the 10 s test (and the margin) fits
    assert refusal(None, [done, soon, later], NOW, 10) == Refusal("attempt_soon", "d1-st1-001", "scheduled", 38.0)
    assert refusal(None, [running, later], NOW, 10) == Refusal("attempt_running", "d1-st1-003", "reading", 570.0)
    by_hand = attempt("manual-1", -100, 30, 600)  # what the agent records now, known or not to the schedule
    assert refusal(by_hand, [later], NOW, 10) == Refusal("attempt_running", "manual-1", "performing", 530.0)


def test_the_days_planned_recording_is_what_is_left_of_it() -> None:
    attempts = [attempt("past", -1000), attempt("now", -100), attempt("next", 600), attempt("after", 1200)]
    seconds, count = planned(attempts, NOW)
    assert count == 3 and seconds == 500 + 602 + 602  # the running one from now, the others from their preroll
