"""An H.264 network camera recorded by stream copy: no decode, no re-encode, still on the shared clock."""

from __future__ import annotations

import json
import subprocess
import time

from media.calibration import LiveRoom, ffmpeg_exe
from media.manifest import read_manifest
from tests.media.conftest import free_udp_port, osce, sync_check, udp_camera_url
from tests.media.test_faults import assert_intact


def probe_frames(folder, track="cam0"):
    manifest = read_manifest(folder)
    data = b"".join((folder / f.file).read_bytes() for f in manifest.track_files(track))
    result = subprocess.run([ffmpeg_exe(), "-i", "pipe:0", "-map", "0:v", "-c", "copy", "-f", "null", "-"],
                            input=data, capture_output=True, timeout=60)
    tail = result.stderr.decode(errors="replace")
    return int(tail.rsplit("frame=", 1)[1].split()[0])


def test_stream_copy_camera_with_pulse_microphone(tmp_path, pulse_microphone):
    port = free_udp_port()
    out = tmp_path / "rec"
    with LiveRoom(f"udp://127.0.0.1:{port}?pkt_size=1316", "room", width=640, height=360):
        time.sleep(3.0)  # the sound server settles its buffer for a new player in its first seconds
        result = osce("record", "--video", "copy:" + udp_camera_url(port), "--audio", pulse_microphone,
                      "--seconds", "8", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    header = read_manifest(out).header
    assert header["tracks"][0]["video"]["copy"] is True
    assert (header["tracks"][0]["video"]["width"], header["tracks"][0]["video"]["height"]) == (640, 360)
    assert_intact(out)
    # 8 s at 25 fps, less what comes before the first keyframe (the generator sends one a second).
    assert 8 * 25 - 30 <= probe_frames(out) <= 8 * 25 + 5, report
    cam = sync_check(out)["tracks"]["cam0"]
    assert cam["pairs"] >= 6 and cam["spread_ms"] <= 20, cam
