"""The agent's status report (station_agent/status_report.py, format media/station_status.py) from a real agent to a
real review server, both as processes: the centre console's stations board shows the station online with its agent
version, cameras, microphone, disk and clock; an attempt started by hand shows its phase and the recording."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

from review_server.db import Database
from review_server.models import StationStatus
from scripts.harness.agent import Daemon, wait_for, write_config
from scripts.harness.ports import free_port
from scripts.harness.review import ReviewProcess, add_session

from .conftest import server_db


def _report(db_url: str) -> dict[str, Any] | None:
    db = Database(db_url)
    try:
        row = db.run(lambda s: s.get(StationStatus, 1))
        return None if row is None else json.loads(row.report)
    finally:
        db.dispose()


def test_the_agent_reports_its_state_to_the_board(tmp_path: Path) -> None:
    db_url, token, _ = server_db(tmp_path)
    admin = add_session(db_url, "admin1", "admin")
    server = ReviewProcess(db_url, tmp_path / "media", free_port(), tmp_path / "server.log")
    config = write_config(tmp_path, cameras=("synthetic", "synthetic:seed=3"),
                          extra=f'[server]\nurl = "{server.url}"\n')
    daemon = Daemon(config)
    try:
        server.start()
        daemon.start({"OSCE_STATION_TOKEN": token})
        wait_for(lambda: _report(db_url) is not None, 30, "the agent's first status report")
        first = _report(db_url)
        assert first is not None
        assert first["agent_version"] == metadata.version("osce-station")
        assert first["phase"] == "idle" and first["recording"] is False
        assert [c["track"] for c in first["cameras"]] == ["cam0", "cam1"]
        assert {c["kind"] for c in first["cameras"]} == {"synthetic"} and first["microphone"]["state"] == "idle"
        assert first["disk"]["free_mb"] > 0 and first["clock"]["source"] in ("server", "local", "cached")

        status, answer = daemon.request("POST", "/api/attempt/start", {"candidate": "240517", "attempt_id": "hand-1"},
                                        token=token)
        assert status == 200, answer
        wait_for(lambda: (_report(db_url) or {}).get("recording") is True, 30, "a report while recording")
        recording = _report(db_url)
        assert recording is not None and recording["attempt_id"] == "hand-1" and recording["candidate"] == "240517"
        assert recording["phase"] in ("reading", "performing")
        wait_for(lambda: all(c["state"] == "recording" and c["arriving"]
                             for c in (_report(db_url) or {"cameras": []})["cameras"]), 30, "cameras arriving")

        html = _html(server, "/admin/board", admin)
        assert 'data-station="st1"' in html and "на связи" in html and metadata.version("osce-station") in html
        assert "идёт" in html  # recording
    finally:
        daemon.stop()
        server.stop()


def _html(server: ReviewProcess, path: str, cookie: str) -> str:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(server.url + path, headers={"Cookie": cookie, "Accept": "text/html"})
    with opener.open(req, timeout=10) as resp:
        return resp.read().decode("utf-8")
