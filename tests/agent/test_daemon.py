"""The station daemon as a real process: attempts record by themselves, survive kill -9, respect the disk
reserve and talk to systemd. Synthetic sources at 320x180; a checklist with reading 2 s, performing 4 s."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from media import sdnotify
from media.manifest import read_manifest, verify_recording
from station_agent.config import ConfigError, load_config
from station_agent.upload_queue import UploadQueue

from .conftest import TOKEN, Client, Daemon, events, wait_for, write_config


def media_count(part: Path) -> int:
    return sum(f.kind == "media" for f in read_manifest(part).fragments)


@pytest.fixture
def daemons() -> list[Daemon]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def test_attempt_by_hand_runs_its_phases_records_and_stops_by_itself(tmp_path: Path, daemons: list[Daemon]) -> None:
    daemon = Daemon(write_config(tmp_path, exam_extra="marking_port = 0"))
    daemons.append(daemon)
    daemon.start({"OSCE_MARKING_PINS": "ivanova:246802"})
    assert daemon.request("GET", "/healthz", token=None) == (200, {"ok": True})
    assert daemon.request("GET", "/api/health", token=None)[0] == 401
    assert daemon.request("GET", "/api/health", token="wrong")[0] == 401
    assert daemon.request("POST", "/api/attempt/stop")[0] == 409  # nothing to stop
    assert daemon.request("POST", "/api/attempt/start", {"candidate": "Иванов"})[0] == 400  # a number, not a name

    status, answer = daemon.request("POST", "/api/attempt/start", {"candidate": "240517", "attempt_id": "d1-st1-001"})
    assert status == 200, answer
    assert answer["status"]["recording"]["part"] == 1
    assert daemon.request("POST", "/api/attempt/start", {"candidate": "240518"})[0] == 409  # one at a time

    # The marking page of this attempt is up; an examiner's cookie also opens the health report.
    marking = answer["status"]["marking"]
    assert marking["attempt_id"] == "d1-st1-001"
    examiner = Client(marking["url"])
    assert examiner.request("POST", "/api/login", {"examiner": "ivanova", "pin": "246802"})[0] == 200
    status, marked = examiner.request("POST", "/api/events", {"event_id": str(uuid.uuid4()), "kind": "mark",
                                                              "item": 1, "done": True})
    assert status == 200 and marked["state"]["candidate_number"] == "240517", marked
    with examiner.opener.open(daemon.url + "/api/health", timeout=10) as response:
        assert response.status == 200 and "disk" in json.loads(response.read())

    phases = []
    health = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        clock = daemon.request("GET", "/api/clock", token=None)[1]
        if not phases or phases[-1] != clock["phase"]:
            phases.append(clock["phase"])
        if clock["phase"] == "performing" and health is None:
            time.sleep(1.2)  # a full health sample of the running recording
            health = daemon.get("/api/health")
        if clock["phase"] == "idle" and len(phases) > 1:
            break
        time.sleep(0.1)
    # "done" shows for at most a tick, until the agent has closed the attempt
    assert [p for p in phases if p != "done"] == ["scheduled", "reading", "performing", "idle"], phases
    assert [c["cue"] for c in clock["cues"]] == ["reading", "performing", "one_minute", "time_up"]

    assert health is not None and health["ok"], health
    cam = health["cameras"][0]
    assert cam["arriving"] and 15 <= cam["fps"] <= 35 and not cam["frozen"] and not cam["black"], cam
    assert health["microphone"]["level_dbfs"] > -40 and not health["microphone"]["silent"], health["microphone"]
    assert health["disk"]["warning"] is False and health["clock"]["source"] == "local"

    folder = tmp_path / "data" / "recordings" / "d1-st1-001"
    log = events(folder)
    assert [e["phase"] for e in log if e["event"] == "phase"] == ["scheduled", "reading", "performing", "done"]
    cues = {e["cue"]: datetime.fromisoformat(e["exam_time"]) for e in log if e["event"] == "cue"}
    header = log[0]
    assert header["event"] == "attempt" and header["candidate"] == "240517" and header["reading_s"] == 2
    reading = datetime.fromisoformat(header["reading_starts_at"])
    assert cues["performing"] - reading == timedelta(seconds=2)
    assert cues["one_minute"] - reading == timedelta(seconds=4)  # 2 s before the end (warn_before_end_s = 2)
    assert cues["time_up"] - reading == timedelta(seconds=6)
    started = next(e for e in log if e["event"] == "part_started")
    assert datetime.fromisoformat(started["media_from"]) <= reading  # the pre-roll covers the warm-up
    assert [e["reason"] for e in log if e["event"] == "part_stopped"] == ["completed"]
    assert log[-1]["event"] == "attempt_done" and log[-1]["stopped_by_hand"] is False

    part = folder / "part-1"
    manifest = read_manifest(part)
    assert manifest.end is not None and manifest.end["reason"] == "completed"
    assert media_count(part) >= 3  # ~7 s of media in 2 s fragments
    assert verify_recording(part) == []
    assert not (folder / "part-2").exists()

    status, wav = daemon.request("GET", "/cues/time_up.wav", token=None)
    with wave.open(io.BytesIO(wav)) as cue:
        assert status == 200 and cue.getnchannels() == 1 and 1.0 < cue.getnframes() / cue.getframerate() < 1.5


def test_scheduled_attempt_resumes_after_kill9_in_part_2_with_the_gap_logged(tmp_path: Path,
                                                                              daemons: list[Daemon]) -> None:
    starts = datetime.now(UTC) + timedelta(seconds=1)
    schedule = {"server_time": starts.isoformat(), "attempts": [
        {"attempt_id": "d1-st2-001", "candidate": "240600", "station_id": "st2",
         "reading_starts_at": starts.isoformat()},
        {"attempt_id": "d1-st1-002", "candidate": "240517", "station_id": "st1", "checklist": "cpr",
         "reading_starts_at": starts.isoformat(), "reading_s": 2, "performing_s": 60}]}
    (tmp_path / "schedule.json").write_text(json.dumps(schedule), encoding="utf-8")
    daemon = Daemon(write_config(tmp_path, exam_extra='schedule_file = "schedule.json"'))
    daemons.append(daemon)
    daemon.start()
    folder = tmp_path / "data" / "recordings" / "d1-st1-002"
    part1, part2 = folder / "part-1", folder / "part-2"
    wait_for(lambda: media_count(part1) >= 2, 25, "two fragments in part-1")  # recording started by itself
    assert not (tmp_path / "data" / "recordings" / "d1-st2-001").exists()  # another station's attempt
    daemon.kill9()
    killed_at = datetime.now(UTC)
    fragments_before = media_count(part1)
    time.sleep(1.0)

    daemon.start()
    wait_for(lambda: media_count(part2) >= 1, 25, "a fragment in part-2")
    assert media_count(part1) == fragments_before  # part-1 is left as the kill left it
    assert read_manifest(part1).end is None
    assert verify_recording(part1) == []
    # every fragment part-1's manifest lists is in the upload queue, also those the kill kept from it
    queue = UploadQueue(tmp_path / "data" / "state" / "upload-queue.db")
    queued = {(i.track, i.seq) for i in queue.items() if Path(i.folder) == part1.resolve()}
    queue.close()
    assert queued == {(f.track, f.seq) for f in read_manifest(part1).fragments}
    log = events(folder)
    assert [e["event"] for e in log].count("attempt") == 1
    assert any(e["event"] == "agent_resumed" and e["phase"] in ("reading", "performing") for e in log)
    gaps = [e for e in log if e["event"] == "gap"]
    assert len(gaps) == 1, log
    gap = gaps[0]
    gap_from, gap_to = datetime.fromisoformat(gap["from"]), datetime.fromisoformat(gap["to"])
    assert gap["before_part"] == 2 and gap["reason"] == "agent_restart"
    assert gap_from <= killed_at < gap_to  # the gap covers the time the agent was dead
    assert gap["seconds"] >= 1.0 and abs((gap_to - gap_from).total_seconds() - gap["seconds"]) < 0.01
    # part-1's media ends where the gap starts (within a fragment): the last fragment end on the wall clock
    assert (killed_at - gap_from).total_seconds() < 4.0

    status, answer = daemon.request("POST", "/api/attempt/stop")
    assert status == 200 and answer["attempt"]["stopped_at"] is not None
    wait_for(lambda: events(folder)[-1]["event"] == "attempt_done", 15, "the attempt to end")
    assert events(folder)[-1]["stopped_by_hand"] is True
    assert read_manifest(part2).end["reason"] == "completed"
    assert read_manifest(part1).end["reason"] == "interrupted"  # closed with the attempt, its media untouched
    assert verify_recording(part1) == [] and media_count(part1) == fragments_before
    assert verify_recording(part2) == []
    assert daemon.request("GET", "/api/clock", token=None)[1]["phase"] == "idle"
    state = json.loads((tmp_path / "data" / "state" / "attempts.json").read_text())
    assert state["attempts"]["d1-st1-002"]["stopped_at"] is not None  # a restart would not record it again


def test_disk_reserve_warns_then_stops_recording_cleanly_and_resumes_with_a_gap(tmp_path: Path,
                                                                                daemons: list[Daemon]) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], capture_output=True)
    assert mounted.returncode == 0, f"this test mounts a small tmpfs and needs root: {mounted.stderr!r}"
    try:
        daemon = Daemon(write_config(tmp_path, data_dir=disk / "data", reserve_mb=5))
        daemons.append(daemon)
        daemon.start()
        status, _ = daemon.request("POST", "/api/attempt/start",
                                   {"candidate": "240517", "attempt_id": "d1-st1-003", "performing_s": 120})
        assert status == 200
        folder = disk / "data" / "recordings" / "d1-st1-003"
        wait_for(lambda: media_count(folder / "part-1") >= 1, 20, "a fragment")
        assert daemon.get("/api/health")["disk"]["warning"] is False

        (disk / "ballast-1").write_bytes(b"\0" * 11 * 2**20)  # about 8.5 MB left: under 2 x reserve
        health = wait_for(lambda: (h := daemon.get("/api/health"))["disk"]["warning"] and h, 10, "a disk warning")
        assert health["recording"] is not None and not health["disk"]["stop"]
        assert any("near the 5.0 MB reserve" in p for p in health["problems"]), health["problems"]

        (disk / "ballast-2").write_bytes(b"\0" * 5 * 2**20)  # about 3.5 MB left: under the reserve
        health = wait_for(lambda: (h := daemon.get("/api/health"))["recording"] is None and h, 15, "the stop")
        assert health["disk"]["stop"] and not health["ok"]
        part1 = read_manifest(folder / "part-1")
        assert part1.end is not None and part1.end["reason"] == "disk_reserve"
        assert verify_recording(folder / "part-1") == []
        assert [e["reason"] for e in events(folder) if e["event"] == "part_stopped"] == ["disk_reserve"]
        time.sleep(1.0)
        assert not (folder / "part-2").exists()  # no recording while under the reserve

        (disk / "ballast-2").unlink()  # space is back: recording resumes in a new part, the gap is logged
        wait_for(lambda: media_count(folder / "part-2") >= 1, 20, "part-2")
        gap = next(e for e in events(folder) if e["event"] == "gap")
        assert gap["reason"] == "disk_reserve" and gap["seconds"] >= 1.0
        daemon.stop()
        assert verify_recording(folder / "part-2") == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_agent_tells_systemd_ready_and_feeds_the_watchdog(tmp_path: Path, daemons: list[Daemon]) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(0.5)
        daemon = Daemon(write_config(tmp_path))
        daemons.append(daemon)
        daemon.start({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "600000"})  # a ping every 0.3 s
        messages: list[str] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and messages.count("WATCHDOG=1") < 3:
            with contextlib.suppress(TimeoutError):
                messages.append(sock.recv(4096).decode())
        assert "READY=1" in messages, messages
        assert messages.count("WATCHDOG=1") >= 3, messages
        assert messages.index("READY=1") < messages.index("WATCHDOG=1")
        assert any(m.startswith("STATUS=idle") for m in messages), messages
        assert daemon.stop() == 0  # SIGTERM: a clean exit
        rest = []
        with contextlib.suppress(TimeoutError):
            while True:
                rest.append(sock.recv(4096).decode())
        assert "STOPPING=1" in rest


def test_sdnotify_abstract_socket_and_watchdog_interval() -> None:
    name = f"osce-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(100) == b"READY=1"
    assert sdnotify.notify("READY=1", {}) is False  # not under systemd: a no-op
    assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "@osce-nobody-listens"}) is False
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # not ours
    assert sdnotify.watchdog_interval({}) is None


@pytest.mark.parametrize(("text", "key", "problem"), [
    ("[station]\nid = 'st 1'\n", "station.id", "letters, digits"),
    ("[video]\nwidth = '1280'\n", "video.width", "must be int"),
    ("[storage]\nreserve_mb = -1\n", "storage.reserve_mb", "at least 0"),
    ("[storage]\nreserv_mb = 5\n", "storage.reserv_mb", "unknown key"),
    ("[[cameras]]\nlatency_ms = 5\n", "cameras[0].source", "missing"),
    ("[server]\nurl = 'https://osce.example'\ntoken_env = 'OSCE_TEST_NO_SUCH_VAR'\n", "server.token_env", "no token"),
    ("[server]\nurl = 'ftp://x'\n", "server.url", "http"),
    ("[exam]\nchecklist = 'missing.yaml'\n", "exam.checklist", "no such file"),
    ("[sever]\nurl = 'x'\n", "sever", "unknown section"),
    ("[station\n", "-", "not valid TOML"),
])
def test_bad_config_names_the_file_the_key_and_the_problem(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert (caught.value.file, caught.value.key) == (str(path), key)
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{path}: {key}: ")


def test_config_defaults_token_file_and_relative_paths(tmp_path: Path) -> None:
    defaults = load_config(None, environ={})
    assert [c.spec for c in defaults.cameras] == ["synthetic"] and defaults.microphone.spec == "synthetic"
    assert defaults.server_url is None and defaults.token is None and defaults.data_dir.name == "agent-data"
    (tmp_path / "token").write_text("s3cret\n")
    path = tmp_path / "agent.toml"
    path.write_text("[server]\nurl = 'https://osce.example/'\ntoken_file = 'token'\nupload_bandwidth_kbps = 800\n"
                    "[storage]\ndata_dir = 'd'\n[microphone]\nsource = 'none'\n[[cameras]]\nsource = '0'\n"
                    "latency_ms = 40\n")
    cfg = load_config(path, environ={"OSCE_STATION_TOKEN": "from-env"})
    assert (cfg.server_url, cfg.token, cfg.bandwidth_bps) == ("https://osce.example", "s3cret", 800_000)
    assert cfg.data_dir == tmp_path / "d" and cfg.microphone is None
    assert [(c.spec, c.latency_ms) for c in cfg.cameras] == [("0", 40.0)]
    path.write_text("[server]\nurl = 'https://osce.example'\n")
    assert load_config(path, environ={"OSCE_STATION_TOKEN": "from-env"}).token == "from-env"


def test_cli_reports_a_bad_config_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[http]\nport = 70000\n")
    result = subprocess.run([sys.executable, "-m", "osce_cli", "agent", "run", "--config", str(path)],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "OSCE_STATION_TOKEN": TOKEN})
    assert result.returncode == 2
    assert f"{path}: http.port: must be at most 65535" in result.stderr
