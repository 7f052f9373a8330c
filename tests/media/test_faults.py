"""Crashes and bad input: kill -9, a camera that goes away, a microphone that cannot open, a full disk.

Each must leave what was already recorded intact: every listed file present with its SHA-256,
every track decoding without a single ffmpeg error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from media.calibration import LiveRoom
from media.manifest import read_manifest, verify_recording
from tests.media.conftest import OSCE, decode_errors, free_udp_port, osce, udp_camera_url

FRAGMENT_S = 2.0


def media_fragments(folder, track="cam0"):
    try:
        return [f for f in read_manifest(folder).track_files(track) if f.kind == "media"]
    except ValueError:
        return []


def assert_intact(folder, tracks=("cam0",)):
    assert verify_recording(folder) == []
    for track in tracks:
        assert decode_errors(folder, track) == "", track


def test_kill_9_loses_at_most_the_fragment_being_written(tmp_path):
    out = tmp_path / "rec"
    proc = subprocess.Popen([*OSCE, "record", "--video", "synthetic", "--video", "synthetic:seed=5",
                             "--audio", "synthetic:skew_ppm=300", "--seconds", "120", "--size", "640x360",
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(media_fragments(out)) < 4:
            assert proc.poll() is None and time.monotonic() < deadline, "the recorder did not get going"
            time.sleep(0.05)
        # Kill at a random-ish point inside the next fragment, then measure what it had written.
        time.sleep(1.3)
        before = {f.file for f in media_fragments(out)}
        killed_at = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    manifest = read_manifest(out)
    assert manifest.end is None  # it really died
    after = {f.file for f in media_fragments(out)}
    assert before <= after
    assert_intact(out, ("cam0", "cam1"))
    # What was lost: from the end of the last listed fragment to the kill. The recording's clock
    # started at the first init file's write; ~1.5 s warm-up and encoder delay sit inside the slack.
    last_end = max(f.end for f in media_fragments(out))
    started = min((out / f.file).stat().st_mtime for f in manifest.fragments if f.kind == "init")
    recorded_s = killed_at - time.monotonic() + time.time() - started
    assert recorded_s - last_end <= FRAGMENT_S + 1.0, (recorded_s, last_end)
    leftovers = [p.name for p in (out / "cam0").iterdir() if p.name.endswith(".part")]
    assert len(leftovers) <= 1


def test_camera_that_stops_mid_recording_is_reported_and_what_came_before_is_kept(tmp_path):
    port = free_udp_port()
    out = tmp_path / "rec"
    room = LiveRoom(f"udp://127.0.0.1:{port}?pkt_size=1316", "room", width=320, height=180)
    try:
        time.sleep(0.5)
        proc = subprocess.Popen([*OSCE, "record", "--video", udp_camera_url(port), "--seconds", "12",
                                 "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(6)
    finally:
        room.close()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    report = json.loads(stdout)
    assert report["reason"] == "completed"
    assert any("stopped delivering frames" in f for f in report["stats"]["failures"]), report
    events = [e["event"] for e in read_manifest(out).events]
    assert "source_lost" in events
    assert len(media_fragments(out)) >= 1
    assert_intact(out)


def test_microphone_that_cannot_open_is_named_and_video_still_records(tmp_path):
    out = tmp_path / "rec"
    result = osce("record", "--video", "synthetic", "--audio", "no-such-microphone", "--seconds", "4",
                  "--size", "320x180", "--out", str(out))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    [failure] = report["stats"]["failures"]
    assert "audio (no-such-microphone)" in failure and "cannot open" in failure
    assert len(media_fragments(out)) >= 1
    assert_intact(out)


def test_unreachable_camera_beside_a_working_one(tmp_path):
    out = tmp_path / "rec"
    result = osce("record", "--video", "synthetic", "--video", "rtsp://127.0.0.1:9/none", "--seconds", "3",
                  "--size", "320x180", "--out", str(out))
    assert result.returncode == 1
    failures = json.loads(result.stdout)["stats"]["failures"]
    assert any("video 1 (rtsp://127.0.0.1:9/none)" in f and "unreachable" in f for f in failures), failures
    assert_intact(out)


def test_no_camera_at_all_is_a_clear_error(tmp_path):
    result = osce("record", "--video", "rtsp://127.0.0.1:9/none", "--seconds", "3", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "no camera could be opened" in result.stderr and "rtsp://127.0.0.1:9/none" in result.stderr


def test_full_disk_stops_cleanly_and_keeps_what_was_written(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True)
    assert mounted.returncode == 0, f"this test mounts a small tmpfs and needs root: {mounted.stderr!r}"
    try:
        out = disk / "rec"
        # Sensor noise makes the picture expensive to encode, so the 3 MB disk fills within seconds.
        result = osce("record", "--video", "synthetic:noise=8", "--audio", "synthetic", "--seconds", "60",
                      "--size", "1280x720", "--out", str(out), timeout=120)
        assert result.returncode == 1
        report = json.loads(result.stdout)
        assert report["reason"] == "error"
        assert any("disk full" in f for f in report["stats"]["failures"]), report
        assert len(media_fragments(out)) >= 1
        assert_intact(out)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
