"""The CPR station's own figures, end to end: a real agent daemon records a synthetic camera showing chest
compressions at 110/min (cycles of 12 with 2 s pauses), publishes rolling figures through the live view
while the attempt runs, analyses the recording when it ends, shows the figures on the tablet's marking
page, and sends the report to a real review server, which is down when the attempt ends and comes back
only after the agent was restarted; a manikin export that appears later is imported, aligned and sent
again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from media.sources import SourceError
from media.sources.synthetic import SyntheticCamera
from review_server.db import Database
from review_server.models import Attempt as AttemptRow
from review_server.models import AuditEvent, Station
from scripts.harness.review import cheap_config
from station_agent.config import ConfigError, load_config
from station_agent.marking_app import PENDING_NOTE

from .conftest import (
    AFTER_S,
    ATTEMPT,
    CAMERA,
    CYCLE,
    PAUSE_S,
    PERIOD,
    RATE,
    Client,
    Daemon,
    ReviewProcess,
    free_port,
    health_of,
    server_db,
    short_checklist,
    stored_report,
    wait_for,
    write_config,
)

ROOT = Path(__file__).resolve().parents[2]


def manikin_export(path: Path) -> None:
    """The manikin's own log of the two cycles the camera saw (its clock starts 50 s before the camera's),
    with depths 5.2-5.8 cm and two breaths after each cycle, in our CSV format."""
    lines = ["# osce-cpr-feedback/1", "# device: test manikin",
             "time_s,event,depth_mm,rate_per_min,recoil,hand_position,volume_ml"]
    for cycle in range(2):
        first = 50.0 + AFTER_S + cycle * (CYCLE * PERIOD + PAUSE_S)
        for k in range(CYCLE):
            lines.append(f"{first + k * PERIOD:.3f},compression,{52 + (k % 4) * 2},,1,ok,")
        lines += [f"{first + CYCLE * PERIOD + 0.3:.3f},ventilation,,,,,550",
                  f"{first + CYCLE * PERIOD + 1.2:.3f},ventilation,,,,,520"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_cpr_station_figures_live_on_the_tablet_and_on_the_server(tmp_path: Path) -> None:
    db_url, token, cookie = server_db(tmp_path)
    server = ReviewProcess(db_url, tmp_path / "media", free_port(), tmp_path / "server.log")
    manikin_dir = tmp_path / "manikin"
    manikin_dir.mkdir()
    checklist = short_checklist(tmp_path, reading_s=1, performing_s=120)  # stopped by hand
    checklist = checklist.rename(tmp_path / "01_basic_cpr_adult.yaml")  # the stem names the checklist's figures
    config = write_config(tmp_path, cameras=(CAMERA,), microphone="none", checklist=checklist,
                          exam_extra="marking = true\nmarking_port = 0",
                          extra=f'[server]\nurl = "{server.url}"\n'
                                f'[cpr]\nanalysis = true\nmanikin_dir = "{manikin_dir}"\nmanikin_wait_s = 120\n')
    daemon = Daemon(config)
    env = {"OSCE_STATION_TOKEN": token}
    try:
        server.start()
        daemon.start(env)
        status, answer = daemon.request("POST", "/api/attempt/start", {"candidate": "240517", "attempt_id": ATTEMPT},
                                        token=token)
        started = time.monotonic()
        assert status == 200, answer
        tablet = Client(answer["status"]["marking"]["url"])
        wait_for(lambda: "ivanova" in daemon.request("GET", "/api/status", token=token)[1]["marking"]["roster"][
            "examiners"], 20,
                 "the server's roster on the station")
        pin = (tmp_path / "pin").read_text(encoding="utf-8")
        assert tablet.request("POST", "/api/login", {"examiner": "ivanova", "pin": pin})[0] == 200

        # While the attempt runs, the observation room's list of streams carries the rolling figures.
        def live_cpr() -> dict[str, Any] | None:
            stations = server.get("/api/live/streams", {"Cookie": cookie})["stations"]
            cpr = next((s.get("cpr") for s in stations if s["station"] == "st1"), None)
            return cpr if cpr and cpr["estimate"] and cpr["rate_per_min"] is not None else None

        live = wait_for(live_cpr, 40, "rolling CPR figures in the live meta", every=0.5)
        assert abs(live["rate_per_min"] - RATE) <= 5, live
        assert live["compressions"] >= 10 and 0.5 <= live["confidence"] <= 1, live
        health = health_of(daemon, token)["cpr"]["live"]
        assert health["frames"] > 0 and health["figures"]["estimate"] is True, health
        clock = daemon.request("GET", "/api/clock", token=None)[1]
        assert clock["attempt_id"] == ATTEMPT and clock["phase"] == "performing", clock  # still running

        server.stop()  # the server is away when the attempt ends, once the camera has shown two cycles
        time.sleep(max(0.0, started + 2 * (CYCLE * PERIOD + PAUSE_S) + 1.5 - time.monotonic()))
        assert daemon.request("POST", "/api/attempt/stop", token=token)[0] == 200

        # The examiner's tablet says the analysis is running, then shows the figures beside the items.
        seen: list[dict[str, list[str]]] = []

        def tablet_figures() -> dict[str, list[str]] | None:
            figures = tablet.request("GET", "/api/state")[1].get("figures")
            if figures and figures not in seen:
                seen.append(figures)
            return figures if figures and "16" in figures else None

        figures = wait_for(tablet_figures, 40, "figures on the tablet", every=0.1)
        assert seen[0] == {"10": [PENDING_NOTE]}, seen
        assert any(line.startswith("Частота (видео): 1") for line in figures["16"]), figures
        assert any(line.startswith("Паузы (видео):") for line in figures["12"]), figures
        local = json.loads((tmp_path / "data" / "recordings" / ATTEMPT / "cpr_figures.json").read_text())
        video = local["video"]
        assert video["estimate"] is True and abs(video["rate_per_min"] - RATE) <= 5, video
        assert video["pauses"] and all(abs(p["length"] - PAUSE_S) <= 0.5 for p in video["pauses"]), video["pauses"]
        assert local["manikin"] is None  # no manikin file yet

        jobs = wait_for(lambda: (j := health_of(daemon, token)["cpr"])["last_error"] and j, 15, "an upload error")
        assert jobs["jobs"] == {"upload": 1} and server.url in jobs["last_error"], jobs
        manikin_export(manikin_dir / "session-0001.csv")  # the operator exports the manikin's session meanwhile

        assert daemon.stop() == 0  # the pending report survives an agent restart ...
        daemon.start(env)
        server.start()  # ... and reaches the server once it is back, followed by the one with the manikin
        report = wait_for(lambda: (r := stored_report(db_url)) and r["manikin"] and r, 40, "the report with manikin")
        assert abs(report["video"]["rate_per_min"] - RATE) <= 5 and report["attempt_id"] == ATTEMPT
        alignment, manikin = report["alignment"], report["manikin"]
        assert alignment["method"] == "auto" and alignment["matched"] >= 15, alignment
        # the manikin's clock is 50 s behind the camera's, and the camera opened about 1.5 s before media time 0
        assert abs(alignment["offset_s"] - (-50.0 - 1.5)) <= 0.25, alignment
        assert abs(manikin["rate_per_min"]["mean"] - RATE) <= 5 and manikin["ventilations"]["count"] == 4, manikin
        assert manikin["depth_mm"]["bands"]["in"] == 100.0 and manikin["file"] == "manikin.csv", manikin
        assert any(line.startswith("Глубина (тренажёр): 5,5 см") for line in report["items"]["13"]), report["items"]
        db = Database(db_url)
        try:
            audits = db.run(lambda s: s.scalars(select(AuditEvent.details).where(
                AuditEvent.action == "attempt.cpr_figures", AuditEvent.target == ATTEMPT)).all())
        finally:
            db.dispose()
        assert len(audits) == 2 and audits[1]["replaces"] == audits[0]["sha256"]  # video first, then with manikin
        wait_for(lambda: health_of(daemon, token)["cpr"]["jobs"] == {"done": 1}, 10, "the job done")
    finally:
        daemon.stop()
        server.stop()


def test_cpr_options_are_checked(tmp_path: Path) -> None:
    for text, key in (("[cpr]\nanalysis = true\ncamera = 1\n", "cpr.camera"),
                      ("[cpr]\nroi = [0.5, 0.5, 0.6, 0.2]\n", "cpr.roi"),
                      ("[cpr]\nlive_fps = 0.5\n", "cpr.live_fps"),
                      ("[cpr]\nanalyse = true\n", "cpr.analyse")):
        (tmp_path / "a.toml").write_text(text, encoding="utf-8")
        try:
            load_config(tmp_path / "a.toml", {})
        except ConfigError as exc:
            assert exc.key == key, exc
        else:
            raise AssertionError(f"{text!r} was accepted")
    (tmp_path / "a.toml").write_text('[cpr]\nanalysis = true\nroi = [0.25, 0.3, 0.5, 0.4]\nmanikin_dir = "m"\n')
    cfg = load_config(tmp_path / "a.toml", {})
    assert cfg.cpr_analysis and cfg.cpr_roi == (0.25, 0.3, 0.5, 0.4) and cfg.cpr_manikin_dir == tmp_path / "m"


def test_synthetic_chest_compressions() -> None:
    for bad in ("cpr_rate=5", "cpr_rate=fast", "cpr_rate=100,cpr_cycle=0", "cpr_rate=100,cpr_depth=3"):
        with pytest.raises(SourceError, match="cpr"):
            SyntheticCamera(bad, 320, 180)
    cam = SyntheticCamera(CAMERA.partition(":")[2], 320, 180)
    cam._pacer.start = 0.0
    above_clock = slice(0, 130)  # the burned-in clock at the bottom changes in every picture

    def changed_rows(a: float, b: float) -> list[int]:
        diff = np.abs(cam._render(a)[above_clock].astype(int) - cam._render(b)[above_clock].astype(int))
        return diff.sum(axis=2).any(axis=1).nonzero()[0].tolist()

    assert changed_rows(1.0, 2.0) == []  # a still camera before the compressions: no roll, no flash
    assert changed_rows(1.0, AFTER_S + 0.4 * PERIOD) == list(range(60, 120))  # the deepest point: the chest window
    assert changed_rows(1.0, AFTER_S + CYCLE * PERIOD + 1.0) == []  # hands off in the pause
    plain = SyntheticCamera("", 320, 180)
    plain._pacer.start = 0.0
    assert plain._render(0.0).mean() > plain._render(0.5).mean() + 20  # the old pattern still flashes


async def test_refused_report_is_kept_failed_with_its_reason(tmp_path: Path) -> None:
    """Without a daemon: two ended attempts queued in CprStation, one of them already another station's on the
    server. The good one is analysed and sent; the other is refused for good (409), not retried, and says why."""
    import asyncio
    import shutil
    from datetime import UTC, datetime

    from aiohttp import web

    from media.cpr.motion import SyntheticChest
    from review_server.app import create_app
    from review_server.storage import LocalStorage
    from station_agent.cpr_analysis import FAILED, PENDING_NAME, REPORT_NAME, CprStation
    from station_agent.lifecycle import Attempt

    db_url, token, _ = server_db(tmp_path)
    db = Database(db_url)
    try:
        def other_station(s):  # type: ignore[no-untyped-def]
            st2 = Station(code="st2", name="st2")
            s.add(st2)
            s.flush()
            s.add(AttemptRow(id="taken-1", station_id=st2.id))

        db.run(other_station)
    finally:
        db.dispose()
    cfg = cheap_config(db_url, tmp_path / "media")
    runner = web.AppRunner(create_app(cfg, storage=LocalStorage(cfg.media_dir)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    recordings = tmp_path / "recordings"
    chest = SyntheticChest(size=(320, 180), duration=9.0, rate=RATE,
                           cycles=SyntheticChest.schedule(RATE, [(1.0, 9.0)]))
    await asyncio.to_thread(chest.record, recordings / "mine-1" / "part-1")  # started_wall 2026-01-01T00:00:00Z
    shutil.copytree(recordings / "mine-1", recordings / "taken-1")
    (tmp_path / "agent.toml").write_text(f'[server]\nurl = "http://127.0.0.1:{port}"\n[cpr]\nanalysis = true\n')
    agent_cfg = load_config(tmp_path / "agent.toml", {"OSCE_STATION_TOKEN": token})
    failures: list[str] = []
    station = CprStation(agent_cfg, recordings, tmp_path / "state", "01_basic_cpr_adult", lambda: None,
                         failures.append)
    for attempt_id in ("mine-1", "taken-1"):
        station.attempt_done(Attempt(attempt_id, "240517", "st1", "01_basic_cpr_adult",
                                     datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), 1.0, 10.0), 0.0)
        assert (recordings / attempt_id / PENDING_NAME).exists()
    task = asyncio.create_task(station.run())
    try:
        for _ in range(300):
            if station.jobs.counts() == {"done": 1, "failed": 1}:
                break
            await asyncio.sleep(0.1)
        assert station.jobs.counts() == {"done": 1, "failed": 1}, station.status()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
    refused = station.jobs.get("taken-1")
    assert refused is not None and refused["state"] == FAILED and refused["tries"] == 1
    assert "HTTP 409" in refused["last_error"] and "another station" in refused["last_error"], refused
    assert failures and "taken-1" in failures[0]
    assert not (recordings / "taken-1" / PENDING_NAME).exists() and (recordings / "taken-1" / REPORT_NAME).exists()
    report = stored_report(db_url, "mine-1")
    assert report is not None and abs(report["video"]["rate_per_min"] - RATE) <= 5, report
    # performing from 00:00:02, media from 00:00:01.5 (the recording's start plus the warm-up)
    assert report["video"]["part"] == "part-1" and report["video"]["start_s"] == 0.5
    assert stored_report(db_url, "taken-1") is None
