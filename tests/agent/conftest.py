"""The station agent suite's helpers: the marking page run as a real `osce agent marking` process, a small JSON
client, Debian's Chromium, the review server the agent talks to (a migrated database with its station, in this
process or as a child), the synthetic CPR camera, and what the upload tests compare. What the benchmarks share
comes from scripts/harness/."""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser
from sqlalchemy import select

from checklists import examiner_keys
from checklists.loader import DATA_DIR
from checklists.marks import MarkEvent
from media.manifest import read_manifest
from review_server.config import ServerConfig
from review_server.db import Database
from review_server.models import Attempt as AttemptRow
from review_server.models import CprFigures, Fragment, Recording, Station
from review_server.models import MarkEvent as MarkRow
from review_server.storage import LocalStorage
from scripts.harness.agent import (
    TOKEN,
    Daemon,
    build_clock_step_shim,
    events,
    set_clock_step,
    short_checklist,
    write_config,
)
from scripts.harness.browser import chromium
from scripts.harness.ports import free_port
from scripts.harness.review import ReviewProcess, add_session, add_station, cheap_config, migrated_database
from scripts.harness.wait import wait_for
from station_agent.journal import Journal
from station_agent.upload_queue import UploadQueue
from tests.mark_signing import issue_key, issue_pin

__all__ = ["TOKEN", "Daemon", "ReviewProcess", "build_clock_step_shim", "events", "free_port", "set_clock_step",
           "short_checklist", "wait_for", "write_config"]

CPR = DATA_DIR / "01_basic_cpr_adult.yaml"
PINS = "ivanova:246802,petrov:135702"
# The CPR station's synthetic camera: compressions at 110/min, 12 a cycle with 2 s pauses, from 3 s after it opens.
RATE = 110.0
PERIOD = 60.0 / RATE
CYCLE, PAUSE_S, AFTER_S = 12, 2.0, 3.0
CAMERA = f"synthetic:cpr_rate={RATE:g},cpr_cycle={CYCLE},cpr_pause_s={PAUSE_S:g},cpr_after_s={AFTER_S:g}"
ATTEMPT = "d1-st1-cpr-001"
CHECKLIST_HASH = "ab" * 32


class AgentProcess:
    """`osce agent marking` in a child process on a free port; start, kill -9 and start again."""

    def __init__(self, db: Path, checklist: Path = CPR, figures: Path | None = None) -> None:
        self.db = db
        self.checklist = checklist
        self.figures = figures
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> str:
        cmd = [
            sys.executable,
            "-m",
            "osce_cli",
            "agent",
            "marking",
            "--checklist",
            str(self.checklist),
            "--db",
            str(self.db),
            "--attempt",
            "day1-st1-007",
            "--candidate",
            "240517",
            "--station",
            "st1",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
        if self.figures is not None:
            cmd += ["--figures", str(self.figures)]
        env = {**os.environ, "OSCE_MARKING_PINS": PINS}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"marking page: (http://\S+/)", line)
            if match:
                self.url = match.group(1)
                return self.url
        self.proc.kill()
        raise AssertionError(f"the marking agent did not start: {''.join(lines)}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Client:
    """A tiny JSON client with a cookie jar and no proxy (urllib, synchronous)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
        )
        try:
            with self.opener.open(req, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path / "marks.db")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


# ---------------------------------------------------------------- the review server the agent talks to


# The examiner's tablet key for S1 (from the latest server_setup): add_marks signs with it, as the tablet does.
TABLET_KEYS: dict[str, tuple[str, Any]] = {}


def schedule_attempts(url: str, station: str, attempts: tuple[str, ...]) -> None:
    """Put attempts on the station's schedule (what `osce server schedule import` does): a station sends marks and
    media only for its own scheduled attempts."""
    db = Database(url)
    try:
        def schedule(s):  # type: ignore[no-untyped-def]
            station_id = s.scalar(select(Station.id).where(Station.code == station))
            for attempt_id in attempts:
                s.add(AttemptRow(id=attempt_id, station_id=station_id))

        db.run(schedule)
    finally:
        db.dispose()


def server_setup(tmp: Path) -> tuple[ServerConfig, str]:
    """A migrated SQLite server database with station S1, its scheduled attempt att-1 and examiner ivanova's tablet
    credential for it; returns the config and S1's bearer token."""
    url = migrated_database(tmp / "server" / "osce.db")
    token = add_station(url, "S1")
    schedule_attempts(url, "S1", ("att-1",))
    db = Database(url)
    try:
        TABLET_KEYS["ivanova"] = issue_key(db.run, "S1", "ivanova")
    finally:
        db.dispose()
    return cheap_config(url, tmp / "server" / "media"), token


def server_db(folder: Path, attempts: tuple[str, ...] = (ATTEMPT, "mine-1")) -> tuple[str, str, str]:
    """A migrated SQLite database with station st1, its scheduled attempts, an observer and examiner ivanova's
    tablet credential for today (her PIN in `folder`/pin): (url, station token, observer cookie)."""
    url = migrated_database(folder / "osce.db")
    token = add_station(url, "st1", "Станция СЛР")
    cookie = add_session(url, "observer1", "observer")
    schedule_attempts(url, "st1", attempts)
    db = Database(url)
    try:
        (folder / "pin").write_text(issue_pin(db.run, "st1", "ivanova")[0], encoding="utf-8")
    finally:
        db.dispose()
    return url, token, cookie


def stored_report(db_url: str, attempt_id: str = ATTEMPT) -> dict[str, Any] | None:
    db = Database(db_url)
    try:
        row = db.run(lambda s: s.get(CprFigures, attempt_id))
        return None if row is None else json.loads(row.body)
    finally:
        db.dispose()


@dataclass
class ServerView:
    fragments: list[tuple[str, str, int, str]]  # (recording, track, seq, sha256), one per row
    marks: list[str]  # event ids, one per row
    media_ok: bool  # every row's bytes are in storage and hash to its sha256


def server_view(cfg: ServerConfig) -> ServerView:
    db = Database(cfg.database_url)
    storage = LocalStorage(cfg.media_dir)
    try:
        with db.transaction() as s:
            rows = s.execute(select(Recording.key, Fragment.track, Fragment.seq, Fragment.sha256).join(Fragment))
            frags: list[tuple[str, str, int, str]] = sorted((r[0], r[1], r[2], r[3]) for r in rows)
            marks = sorted(s.scalars(select(MarkRow.event_id)))
    finally:
        db.dispose()
    ok = all(storage.exists(f[3]) and hashlib.sha256(storage.get(f[3])).hexdigest() == f[3] for f in frags)
    return ServerView(frags, marks, ok)


# ---------------------------------------------------------------- the station's side



def health_of(daemon: Daemon, token: str) -> dict[str, Any]:
    status, body = daemon.request("GET", "/api/health", token=token)
    assert status == 200, body
    return body


def add_marks(journal: Journal, count: int, attempt: str = "att-1", examiner: str = "ivanova") -> list[str]:
    ids = []
    for i in range(count):
        ev = MarkEvent.new(attempt_id=attempt, station_id="S1", examiner=examiner, kind="mark",
                           checklist_hash=CHECKLIST_HASH, seq=journal.next_seq(attempt, examiner), item=1 + i % 10,
                           done=i % 3 != 0)
        key_id, key = TABLET_KEYS[examiner]
        journal.append(ev, examiner_keys.sign(key, key_id, ev))  # as the marking page journals it
        ids.append(ev.event_id)
    return ids


def expected_fragments(folder: Path) -> list[tuple[str, str, int, str]]:
    m = read_manifest(folder)
    return sorted((m.header["recording_id"], f.track, f.seq, f.sha256) for f in m.fragments)


def drained(queue: UploadQueue, journal: Journal | None = None) -> bool:
    return queue.stats()["length"] == 0 and (journal is None or not journal.pending())
