"""A station agent on a real RTSP camera (GStreamer's server, media/rtsp_server.py): the camera's login from a
password file, its own microphone as the station's sound (`microphone.source = "camera:0"`), the health report's
"no sound from camera N" when that sound stops, and "camera N delivers F fps of R requested" for a short camera."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from media.manifest import read_manifest, verify_recording
from media.rtsp_server import RtspServer
from station_agent.health import CameraWatch, MicWatch, problems
from station_agent.live_status import warnings_of
from tests.media.conftest import rtsp_stand_in

from .conftest import Daemon, wait_for, write_config

PASSWORD = "k0mn@ta:7"


@pytest.fixture
def daemons() -> list[Daemon]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def test_an_rtsp_camera_with_its_own_microphone_records_and_its_silence_is_warned(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    rtsp_stand_in()
    (tmp_path / "camera.pw").write_text(PASSWORD + "\n")
    with RtspServer({"main": {"video": "h265", "audio": "alaw", "width": 480, "height": 270, "key_int": 25}},
                    user="admin", password=PASSWORD) as cams:
        config = write_config(tmp_path, cameras=(cams.url("main"),), microphone="camera:0")
        text = config.read_text().replace(f'source = "{cams.url("main")}"\n',
                                          f'source = "{cams.url("main")}"\nuser = "admin"\n'
                                          f'password_file = "{tmp_path / "camera.pw"}"\n')
        config.write_text(text)
        daemon = Daemon(config)
        daemons.append(daemon)
        daemon.start()
        status, answer = daemon.request("POST", "/api/attempt/start", {"candidate": "240517", "attempt_id": "r1",
                                                                        "reading_s": 2, "performing_s": 14})
        assert status == 200, answer

        def sounding() -> dict | None:
            health = daemon.get("/api/health")
            mic = health.get("microphone") or {}
            return health if mic.get("state") == "recording" and mic.get("arriving") and health["ok"] else None

        health = wait_for(sounding, 20, "the camera's pictures and sound in the health report, no problem")
        assert health["microphone"]["camera"] == 0 and health["microphone"]["level_dbfs"] > -40, health
        assert health["cameras"][0]["arriving"] and health["ok"], health["problems"]
        cams.set_audio("main", on=False)

        def unsounded() -> dict | None:
            health = daemon.get("/api/health")
            return health if "no sound from camera 0" in health["problems"] else None

        health = wait_for(unsounded, 15, "no sound from camera 0")
        assert health["cameras"][0]["arriving"], health  # the pictures go on
        assert {"code": "mic_lost", "text": "Нет звука с камеры 0"} in warnings_of(health)
        wait_for(lambda: daemon.get("/api/clock")["phase"] == "idle", 30, "the attempt's end")
        log_text = daemon.log.read_text(errors="replace")
    part = tmp_path / "data" / "recordings" / "r1" / "part-1"
    manifest = read_manifest(part)
    track = manifest.header["tracks"][0]
    assert track["video"]["codec"] == "hevc" and track["video"]["copy"] is True
    assert track["audio"]["source"] == "camera:0" and track["source"].startswith("rtsp://127.0.0.1:")
    assert verify_recording(part) == []
    lost = [e for e in manifest.events if e["event"] == "source_lost" and e["track"] == "audio"]
    assert lost, manifest.events
    everything = log_text + json.dumps(health) + (part / "manifest.jsonl").read_text()
    assert PASSWORD not in everything and "k0mn" not in everything


def test_a_camera_short_of_its_rate_and_a_silent_camera_microphone_are_named() -> None:
    cam = CameraWatch("cam1", "/dev/video0", fps_requested=25.0)
    reports = []
    for second in range(7):  # YUYV 1280x720 over USB 2.0: ten pictures a second
        cam.frames += 10
        cam.last_item_t = 100.0 + second
        reports.append(cam.sample(100.0 + second, frozen_s=3.0))
    assert not reports[0]["slow"] and reports[-1]["slow"] and reports[-1]["fps_delivered"] == 10.0, reports[-1]
    mic = MicWatch("camera:1", camera=1).sample(107.0, 30.0, -60.0, 0.0, 0)
    report = {"cameras": [reports[-1]], "microphone": mic}
    assert problems(report) == ["camera 1 delivers 10 fps of 25 requested", "no sound from camera 1"]
    codes = {w["code"]: w["text"] for w in warnings_of(report)}
    assert codes == {"camera_slow": "Камера cam1: 10.0 к/с из 25.0", "mic_lost": "Нет звука с камеры 1"}
    steady = CameraWatch("cam0", "synthetic", fps_requested=25.0)
    for second in range(7):
        steady.frames += 24
        steady.last_item_t = 100.0 + second
        sample = steady.sample(100.0 + second, frozen_s=3.0)
    assert not sample["slow"]  # 24 of 25 is a camera at its rate
