"""RTSP cameras failing as real ones do, against the real RTSP server (media/rtsp_server.py): a reboot in the middle
of a recording, a reboot into another resolution, a wrong password, no sound in the session, the sound stopping,
and packets lost on UDP. The camera's password never shows in what the recorder writes or says."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from media import clock
from media.manifest import read_manifest, verify_recording
from media.recorder import Recorder, RecorderConfig, SourceConfig
from media.rtsp_server import RtspServer

from .conftest import decode_errors, osce, rtsp_stand_in

PASSWORD = "s3cret:pa ss@word"


@pytest.fixture(autouse=True)
def _stand_in() -> None:
    rtsp_stand_in()


def media_fragments(folder: Path, track: str = "cam0") -> list:
    try:
        return [f for f in read_manifest(folder).fragments if f.kind == "media" and f.track == track]
    except Exception:  # noqa: BLE001 - the manifest may not exist yet
        return []


def wait_for(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def everything_written(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*.jsonl"))


def test_a_camera_reboot_is_a_logged_gap_and_recording_goes_on_within_5_s_of_its_return(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An H.265 camera with its own sound, its login given apart from the URL, loses power for 3 s."""
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "rec"
    with RtspServer({"cam": {"video": "h265", "audio": "alaw", "width": 480, "height": 270}},
                    user="admin", password=PASSWORD) as cams:
        recorder = Recorder(RecorderConfig(
            out_dir=out, videos=[SourceConfig("copy:" + cams.url("cam"), user="admin", password=PASSWORD)],
            audio=SourceConfig("camera:0")))
        recorder.start()
        try:
            wait_for(lambda: len(media_fragments(out)) >= 2, 20, "two fragments before the reboot")
            cams.restart(down_s=3.0)
            back_at = clock.now()
            wait_for(lambda: any(f.start + recorder.origin > back_at for f in media_fragments(out)), 20,
                     "a fragment after the camera's return")
            time.sleep(1.0)
        finally:
            stats = recorder.stop()
    assert recorder.stop_reason == "completed"
    manifest = read_manifest(out)
    events = [(e["event"], e["track"]) for e in manifest.events]
    assert ("source_lost", "cam0") in events and ("source_back", "cam0") in events, events
    assert ("source_lost", "audio") in events and ("source_back", "audio") in events, events  # its sound too
    after = min(f.start for f in media_fragments(out) if f.start + recorder.origin > back_at)
    assert after + recorder.origin - back_at <= 5.0, after + recorder.origin - back_at
    assert verify_recording(out) == [] and decode_errors(out, "cam0") == ""
    # The password is nowhere: manifest, stats, logs, failures.
    written = everything_written(out) + json.dumps(stats) + caplog.text + "\n".join(recorder.failures)
    assert "admin" in written or "cam" in written
    for secret in (PASSWORD, "s3cret", "pa%20ss", "s3cret%3Apa"):
        assert secret not in written


def test_a_camera_back_with_another_resolution_ends_the_part_and_leaves_a_sound_track(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    with RtspServer({"cam": {"video": "h264", "audio": "alaw", "width": 480, "height": 270}}) as cams:
        recorder = Recorder(RecorderConfig(out_dir=out, videos=[SourceConfig("copy:" + cams.url("cam"))],
                                           audio=SourceConfig("camera:0")))
        recorder.start()
        try:
            wait_for(lambda: len(media_fragments(out)) >= 2, 20, "two fragments before the reboot")
            cams.restart(down_s=1.0, cam={"width": 640, "height": 360})
            wait_for(lambda: recorder.stopped, 20, "the recorder to stop for the new stream")
        finally:
            recorder.stop()
    assert recorder.stop_reason == "source_changed"
    changed = [e for e in read_manifest(out).events if e["event"] == "source_changed"]
    assert changed and "came back as H.264 640x360 (was H.264 480x270)" in changed[0]["message"], changed
    assert read_manifest(out).end["reason"] == "source_changed"
    assert verify_recording(out) == [] and decode_errors(out, "cam0") == ""  # what came before is intact


def test_a_wrong_password_is_a_clear_refusal_that_never_shows_the_password(tmp_path: Path) -> None:
    with RtspServer({"cam": {}}, user="admin", password=PASSWORD) as cams:
        result = osce("record", "--video", "copy:" + cams.url("cam", "admin", "wrong-" + PASSWORD), "--seconds", "2",
                      "--out", str(tmp_path / "rec"))
        wrong_path = osce("record", "--video", cams.url("nope", "admin", PASSWORD), "--seconds", "2",
                          "--out", str(tmp_path / "rec2"))
    assert wrong_path.returncode == 2 and "no stream at this path (404)" in wrong_path.stderr, wrong_path.stderr
    assert "s3cret" not in wrong_path.stderr + wrong_path.stdout
    assert result.returncode == 2
    assert "refused the login (401)" in result.stderr and "rtsp://admin:***@127.0.0.1" in result.stderr
    assert "wrong-" not in result.stderr + result.stdout and "s3cret" not in result.stderr + result.stdout


def test_a_camera_without_sound_records_its_pictures_and_says_why_there_is_no_sound(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    with RtspServer({"mute": {"width": 320, "height": 180}}) as cams:
        result = osce("record", "--video", cams.url("mute"), "--audio", "camera:0", "--seconds", "4", "--out", str(out))
    assert result.returncode == 1  # a failure is reported ...
    stats = json.loads(result.stdout)["stats"]
    assert any("sends no sound (its RTSP session has no audio stream)" in f for f in stats["failures"]), stats
    assert read_manifest(out).header["tracks"][0]["audio"] is None  # ... and the pictures are recorded
    assert len(media_fragments(out)) >= 1 and decode_errors(out, "cam0") == ""


def test_the_cameras_sound_stopping_is_reported_and_the_pictures_go_on(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    with RtspServer({"cam": {"audio": "alaw", "width": 320, "height": 180, "key_int": 25}}) as cams:
        recorder = Recorder(RecorderConfig(out_dir=out, videos=[SourceConfig(cams.url("cam"))],
                                           audio=SourceConfig("camera:0")))
        recorder.start()
        try:
            wait_for(lambda: len(media_fragments(out)) >= 1, 20, "a first fragment")
            cams.set_audio("cam", on=False)
            stopped_at = clock.now()
            wait_for(lambda: any(e["event"] == "source_lost" for e in read_manifest(out).events), 10,
                     "the sound reported lost")
            wait_for(lambda: any(f.start + recorder.origin > stopped_at + 3 for f in media_fragments(out)), 15,
                     "pictures after the sound stopped")
        finally:
            recorder.stop()
    lost = [e for e in read_manifest(out).events if e["event"] == "source_lost"]
    assert lost[0]["track"] == "audio" and "stopped delivering samples" in lost[0]["message"], lost
    assert verify_recording(out) == [] and decode_errors(out, "cam0") == ""


def test_packets_lost_on_udp_are_counted_as_damaged_and_noted(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    with RtspServer({"lossy": {"drop_every": 40, "width": 320, "height": 180}}) as cams:
        result = osce("record", "--video", "copy:" + cams.url("lossy"), "--transport", "udp", "--seconds", "5",
                      "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    damaged = json.loads(result.stdout)["stats"]["cam0"]["damaged_packets"]
    assert damaged >= 3, damaged
    noted = [e for e in read_manifest(out).events if e["event"] == "source_damaged"]
    assert noted and noted[0]["track"] == "cam0", noted
    assert verify_recording(out) == []  # what arrived is recorded and intact on disk
