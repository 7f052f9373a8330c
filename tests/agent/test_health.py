"""Station health: the picture and sound checks on their own, then a real agent reporting a frozen camera
and a silent microphone while it goes on recording."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np

from media.manifest import read_manifest
from media.sources import AudioBlock, EncodedVideo, RawFrame
from media.sources.synthetic import SyntheticCamera, SyntheticMicrophone
from station_agent.health import CameraWatch, MicWatch, SourceWatch, dbfs, disk_status, problems

from .conftest import Daemon, wait_for, write_config


def frame(image: np.ndarray) -> RawFrame:
    return RawFrame(image=image, device_t=0.0, observed_t=0.0)


def test_frozen_picture_is_reported_after_frozen_s_and_cleared_by_motion() -> None:
    cam = CameraWatch("cam0", "synthetic")
    rng = np.random.default_rng(1)
    still = rng.integers(0, 255, (180, 320, 3), dtype=np.uint8)
    results = []
    for second in range(5):
        cam.latest = still
        cam.frames += 25
        cam.last_item_t = 100.0 + second
        results.append(cam.sample(100.0 + second, frozen_s=2.0))
    assert [r["frozen"] for r in results] == [False, False, False, True, True]
    assert results[-1]["frozen_for_s"] == 3.0 and results[-1]["fps"] == 25.0
    cam.latest = np.roll(still, 40, axis=1)  # the picture moves again
    assert cam.sample(105.0, frozen_s=2.0)["frozen"] is False


def test_black_picture_and_frames_not_arriving() -> None:
    cam = CameraWatch("cam1", "/dev/video0")
    cam.latest = np.full((180, 320, 3), 4, dtype=np.uint8)
    cam.last_item_t = 10.0
    report = cam.sample(10.5, frozen_s=3.0)
    assert report["black"] is True and report["arriving"] is True
    assert cam.sample(13.0, frozen_s=3.0)["arriving"] is False  # nothing for 2.5 s


def test_a_stream_copied_camera_counts_its_damaged_packets() -> None:
    watch = SourceWatch(cameras={"cam0": CameraWatch("cam0", "copy:udp://camera")})
    for n in range(10):
        packet = av.Packet(b"\0\0\0\1" + bytes(100))
        packet.is_corrupt = n in (3, 7)  # what the MPEG-TS demuxer flags after a continuity-counter gap
        watch.observe("cam0", EncodedVideo(packet=packet, device_t=n / 25, observed_t=n / 25))
    report = watch.sample(frozen_s=3.0, silence_s=3.0, silence_dbfs=-60.0)["cameras"][0]
    assert report["frames"] == 10 and report["damaged_packets"] == 2, report


def test_synthetic_camera_moves_and_its_frozen_variant_does_not() -> None:
    def thumbs(spec: str) -> list[bool]:
        camera = SyntheticCamera(spec, width=320, height=180, fps=50)
        camera.open()
        watch = CameraWatch("cam0", spec)
        out = []
        for i in range(60):  # 1.2 s of frames, sampled every 10 frames
            item = camera.read(timeout=1.0)
            assert item is not None
            watch.latest = item.image
            if i % 10 == 9:
                out.append(watch.sample(i / 50, frozen_s=0.1)["frozen"])
        camera.close()
        return out

    assert not any(thumbs(""))
    assert thumbs("freeze_after_s=0.2")[-1] is True


def test_sound_level_and_silence() -> None:
    assert dbfs(0.0) == -120.0
    assert math.isclose(dbfs(0.5**2 / 2), -9.03, abs_tol=0.01)  # a 0.5 sine: -9 dBFS
    mic = MicWatch("synthetic")
    loud = mic.sample(0.0, silence_s=2.0, silence_dbfs=-60.0, sum_sq=0.125 * 480, n=480)
    assert loud["level_dbfs"] == -9.0 and not loud["silent"]
    quiet = [mic.sample(t, 2.0, -60.0, sum_sq=1e-10 * 480, n=480)["silent"] for t in (1.0, 2.0, 3.0, 4.0)]
    assert quiet == [False, False, True, True]

    watch = SourceWatch({}, MicWatch("synthetic"))
    microphone = SyntheticMicrophone("mute_after_s=0.5")
    microphone.open()
    levels = []
    for _ in range(10):  # one second in 0.1 s steps
        for _ in range(10):
            block = microphone.read(timeout=1.0)
            assert isinstance(block, AudioBlock)
            watch.observe("audio", block)
        levels.append(watch.sample(3.0, silence_s=30.0, silence_dbfs=-60.0)["microphone"]["level_dbfs"])
    microphone.close()
    assert min(levels[:4]) > -58 and levels[-1] == -120.0  # noise (-54 dBFS) or beeps, then digital silence


def test_disk_status_and_problems(tmp_path: Path) -> None:
    status = disk_status(tmp_path, reserve_bytes=1 << 50)  # a reserve no disk has
    assert status["warning"] and status["stop"]
    assert disk_status(tmp_path, reserve_bytes=0)["warning"] is False
    report = {"cameras": [{"track": "cam0", "source": "0", "state": "recording", "arriving": True, "frozen": True,
                           "frozen_for_s": 4.0, "black": False},
                          {"source": "1", "state": "idle"}],
              "microphone": {"source": "usb", "state": "recording", "arriving": False, "silent": False},
              "disk": status, "failures": ["cam2: gone"]}
    found = problems(report)
    assert found[0] == "cam0 (0): picture frozen for 4.0 s"
    assert "microphone (usb): no sound arriving" in found
    assert any(p.startswith("disk:") and "recording stopped" in p for p in found)
    assert found[-1] == "cam2: gone"


def test_agent_reports_a_frozen_camera_and_a_silent_microphone(tmp_path: Path) -> None:
    config = write_config(tmp_path, cameras=("synthetic:freeze_after_s=1", "synthetic"),
                          microphone="synthetic:mute_after_s=1", extra="[health]\nfrozen_s = 1.5\nsilence_s = 1.5\n")
    daemon = Daemon(config)
    try:
        daemon.start()
        status, _ = daemon.request("POST", "/api/attempt/start",
                                   {"candidate": "240517", "attempt_id": "d1-st1-009", "performing_s": 60})
        assert status == 200
        health = wait_for(lambda: (h := daemon.get("/api/health"))["cameras"] and h["cameras"][0]["frozen"]
                          and h["microphone"]["silent"] and h, 20, "a frozen camera and a silent microphone")
        frozen, moving = health["cameras"]
        assert frozen["source"] == "synthetic:freeze_after_s=1" and frozen["arriving"] and frozen["fps"] > 10
        assert moving["frozen"] is False and moving["arriving"]
        assert health["microphone"]["level_dbfs"] == -120.0
        assert health["ok"] is False
        assert any("cam0" in p and "frozen" in p for p in health["problems"]), health["problems"]
        assert any("silent" in p for p in health["problems"]), health["problems"]
        part = tmp_path / "data" / "recordings" / "d1-st1-009" / "part-1"
        wait_for(lambda: sum(f.kind == "media" for f in read_manifest(part).fragments) >= 2, 10, "fragments")
    finally:
        daemon.stop()
