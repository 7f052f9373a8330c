"""The tablet with the server's roster (issue 16, case 2), on a real agent and a real server: examiners sign in
with the PINs the server issued, through an outage and an agent restart in it (the roster the station keeps);
every mark they make reaches the server with a proof the server checked, by that examiner's own key; a revoked
credential stops signing in once the station syncs; a session ends with the exam day (the agent's clock stepped
past it)."""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from checklists import examiner_keys
from checklists.marks import WIRE_FIELDS, MarkEvent
from review_server import auth
from review_server.db import Database
from review_server.migrations import upgrade
from review_server.models import MarkEvent as MarkRow
from review_server.models import Station, TabletCredential
from tests.mark_signing import issue_pin

from .conftest import Client
from .daemon_process import Daemon, build_clock_step_shim, set_clock_step, wait_for, write_config
from .test_cpr_agent import ROOT, Server
from .test_upload import free_port

ATTEMPT = "d1-st1-roster"


def _server_db(folder: Path) -> tuple[str, str, dict[str, tuple[str, str]]]:
    """(db url, st1's token, {examiner: (PIN, key_id)}): ivanova and petrov, each with today's credential."""
    url = f"sqlite:///{folder / 'osce.db'}"
    upgrade(url)
    auth.configure_passwords(1, 8, 1)  # TEST-ONLY cost
    db = Database(url)
    try:
        def station(s):  # type: ignore[no-untyped-def]
            st = Station(code="st1", name="st1")
            s.add(st)
            s.flush()
            return auth.issue_station_token(s, st)[0]

        token = db.run(station)
        creds = {}
        for login in ("ivanova", "petrov"):
            pin, entry = issue_pin(db.run, "st1", login)
            creds[login] = (pin, entry.key_id)
    finally:
        db.dispose()
    return url, token, creds


def _status(daemon: Daemon, token: str) -> dict[str, Any]:
    status, body = daemon.request("GET", "/api/status", token=token)
    assert status == 200, body
    return body


def _server_marks(db_url: str, ids: list[str]) -> list[tuple[MarkRow, str]]:
    db = Database(db_url)
    try:
        return db.run(lambda s: [(row, s.scalar(select(TabletCredential.public_key).where(
            TabletCredential.key_id == row.key_id))) for row in s.scalars(select(MarkRow).where(
                MarkRow.event_id.in_(ids)))])
    finally:
        db.dispose()


def test_examiners_sign_in_offline_and_the_server_checks_who_marked(tmp_path: Path) -> None:
    db_url, token, creds = _server_db(tmp_path)
    server = Server(db_url, tmp_path / "media", free_port(), tmp_path / "server.log")
    config = write_config(tmp_path, microphone="none", exam_extra="marking = true\nmarking_port = 0",
                          extra=f'[server]\nurl = "{server.url}"\n')
    daemon = Daemon(config)
    env = {"OSCE_STATION_TOKEN": token}
    try:
        server.start()
        daemon.start(env)
        wait_for(lambda: _status(daemon, token)["marking"]["roster"]["examiners"] == ["ivanova", "petrov"], 30,
                 "the server's roster on the station")
        # The network goes (the server is away), and the agent restarts inside the outage.
        server.stop()
        daemon.kill9()
        daemon.start(env)
        assert _status(daemon, token)["marking"]["roster"]["source"] == "cache"
        status, answer = daemon.request("POST", "/api/attempt/start", {"candidate": "240517", "attempt_id": ATTEMPT},
                                        token=token)
        assert status == 200, answer
        tablet = Client(answer["status"]["marking"]["url"])
        assert tablet.request("POST", "/api/login", {"examiner": "ivanova", "pin": creds["petrov"][0]})[0] == 401
        assert tablet.request("POST", "/api/login", {"examiner": "ivanova", "pin": creds["ivanova"][0]})[0] == 200
        ids = []
        for item in (1, 2, 3):
            event_id = str(uuid.uuid4())
            status, body = tablet.request("POST", "/api/events", {"event_id": event_id, "kind": "mark", "item": item,
                                                                  "done": item != 2})
            assert status == 200 and body["event"]["examiner"] == "ivanova", body
            ids.append(event_id)
        # The server is back: the marks go up, each with ivanova's proof, checked there and kept.
        server.start()
        rows = wait_for(lambda: (found := _server_marks(db_url, ids)) and len(found) == 3 and found, 60,
                        "the tablet's marks on the server")
        for row, public_key in rows:
            assert (row.examiner, row.key_id, row.source) == ("ivanova", creds["ivanova"][1], "station:st1")
            event = MarkEvent.from_json({k: getattr(row, k) for k in WIRE_FIELDS})
            assert examiner_keys.verify(public_key, base64.b64decode(row.signature), event)
        # Revoked: once the station has synced its roster, petrov cannot sign in with that PIN.
        done = subprocess.run([sys.executable, "-m", "osce_cli", "server", "tablet", "revoke", creds["petrov"][1],
                               "--config", str(_server_toml(tmp_path, db_url))], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: _status(daemon, token)["marking"]["roster"]["examiners"] == ["ivanova"], 45,
                 "the roster without petrov")
        assert tablet.request("POST", "/api/login", {"examiner": "petrov", "pin": creds["petrov"][0]})[0] == 401
    finally:
        daemon.stop()
        server.stop()


def _server_toml(folder: Path, db_url: str) -> Path:
    path = folder / "server.toml"
    path.write_text(f'database_url = "{db_url}"\nmedia_dir = "{folder / "media"}"\n'
                    "argon2_time_cost = 1\nargon2_memory_kib = 8\nargon2_parallelism = 1\n", encoding="utf-8")
    return path


def test_a_tablet_session_ends_with_the_day(tmp_path: Path) -> None:
    """The agent's clock is stepped a day ahead (between attempts, where the agent takes a step): the session
    that was signed in is over, on the agent itself, whatever the tablet's cookie says."""
    shim = build_clock_step_shim(tmp_path)
    step_file = tmp_path / "clock-step"
    set_clock_step(step_file, 0)
    daemon = Daemon(write_config(tmp_path, microphone="none", exam_extra="marking_port = 0"))
    try:
        daemon.start({"LD_PRELOAD": str(shim), "OSCE_CLOCK_STEP_FILE": str(step_file),
                      "OSCE_MARKING_PINS": "ivanova:246802"})
        status, answer = daemon.request("POST", "/api/attempt/start", {"candidate": "240517", "attempt_id": "d1-day"})
        assert status == 200, answer
        tablet = Client(answer["status"]["marking"]["url"])
        assert tablet.request("POST", "/api/login", {"examiner": "ivanova", "pin": "246802"})[0] == 200
        assert daemon.request("POST", "/api/attempt/stop", {})[0] == 200
        assert tablet.request("GET", "/api/state")[0] == 200  # the finished attempt's page stays, signed in
        set_clock_step(step_file, 25 * 3600)
        wait_for(lambda: tablet.request("GET", "/api/state")[0] == 401, 20, "the session to end with the day")
    finally:
        daemon.stop()
