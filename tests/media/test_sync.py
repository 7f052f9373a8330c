"""A/V sync through the whole pipeline, measured from the flash-and-beep markers as a player sees them.

Short versions of the 10-minute runs in bench/bench_sync.py.
"""

from __future__ import annotations

import subprocess
import time

from media.calibration import LiveRoom
from tests.media.conftest import OSCE, free_udp_port, osce, sync_check, udp_camera_url


def test_synthetic_sources_stay_in_sync_at_100_and_1000_ppm(tmp_path):
    runs = {ppm: tmp_path / f"skew{ppm}" for ppm in (100, 1000)}
    procs = [subprocess.Popen([*OSCE, "record", "--video", "synthetic:skew_ppm=-50,jitter_ms=5,seed=2",
                               "--audio", f"synthetic:skew_ppm={ppm},jitter_ms=5,seed=3",
                               "--seconds", "25", "--size", "320x180", "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for ppm, out in runs.items()]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    for ppm, out in runs.items():
        cam = sync_check(out)["tracks"]["cam0"]
        assert cam["pairs"] >= 20, (ppm, cam)
        assert abs(cam["median_ms"]) <= 10, (ppm, cam)
        assert cam["max_abs_ms"] <= 20, (ppm, cam)


def test_network_camera_and_pulseaudio_microphone_after_calibration(tmp_path, pulse_microphone):
    """ffmpeg plays one flash-and-beep signal as a UDP camera and into the PulseAudio null sink.

    A technician's procedure: record the calibration signal, take sync-check's suggested camera
    latency, record again with it. The offset must be stable and then near zero.
    """
    port = free_udp_port()
    with LiveRoom(f"udp://127.0.0.1:{port}?pkt_size=1316", "room", width=640, height=360):
        time.sleep(1.0)
        common = ["record", "--video", udp_camera_url(port), "--audio", pulse_microphone, "--seconds", "10"]
        first = osce(*common, "--out", str(tmp_path / "calibration"))
        assert first.returncode == 0, first.stderr[-2000:]
        calibration = sync_check(tmp_path / "calibration")["tracks"]["cam0"]
        assert calibration["pairs"] >= 8, calibration
        assert calibration["spread_ms"] <= 20, calibration
        latency = calibration["suggested_camera_latency_ms"]
        second = osce(*common, "--video-latency-ms", str(latency), "--out", str(tmp_path / "checked"))
        assert second.returncode == 0, second.stderr[-2000:]
    checked = sync_check(tmp_path / "checked")["tracks"]["cam0"]
    assert checked["pairs"] >= 8, checked
    assert checked["spread_ms"] <= 20, checked
    assert abs(checked["median_ms"]) <= 40, (latency, checked)
