"""Shared helpers for the media tests: the osce command, ffmpeg, free ports, the test microphone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from media.calibration import ffmpeg_exe
from media.manifest import read_manifest
from scripts.harness.ports import free_udp_port as free_udp_port  # the media tests take it from here

OSCE = [sys.executable, "-m", "osce_cli"]


def udp_camera_url(port: int) -> str:
    return f"udp://127.0.0.1:{port}?fifo_size=1000000&overrun_nonfatal=1"


def osce(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*OSCE, *args], capture_output=True, text=True, timeout=timeout)


def sync_check(folder: Path) -> dict:
    result = osce("sync-check", str(folder))
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def decode_errors(folder: Path, track: str) -> str:
    """What ffmpeg says decoding a track's init + media files as one stream (empty when clean)."""
    manifest = read_manifest(folder)
    data = b"".join((folder / f.file).read_bytes() for f in manifest.track_files(track))
    # The pictures keep their own times (1/90000): without passthrough ffmpeg re-times them to 1/25 s slots for the
    # null output and calls two pictures in one slot (a camera's burst after it reconnects) non-monotonic.
    result = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", "pipe:0", "-fps_mode", "passthrough",
                             "-enc_time_base:v", "demux", "-f", "null", "-"],
                            input=data, capture_output=True, timeout=120)
    return result.stderr.decode(errors="replace").strip()


@pytest.fixture(scope="session")
def pulse_microphone() -> str:
    """The PulseAudio null sink `room` started by scripts/services.sh; its monitor is the microphone."""
    info = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True)
    assert info.returncode == 0 and "room" in info.stdout, (
        "PulseAudio with the null sink 'room' is not running: run `eval \"$(bash scripts/services.sh)\"`")
    return "pulse"


def rtsp_stand_in() -> None:
    """GStreamer's RTSP server (the IP camera stand-in) must run here: under CI its absence fails the test."""
    from media.rtsp_server import available

    reason = available()
    if reason is not None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def stimulus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The flash-and-beep clip for the RTSP stand-in to serve (90 s, 640x360, PCM sound)."""
    from media.rtsp_server import write_stimulus

    return write_stimulus(tmp_path_factory.mktemp("stimulus") / "flash-beep.mkv", 90)


def decodes_fragment_by_fragment(folder: Path, track: str) -> list[str]:
    """Errors decoding each media fragment of a track on its own (init + that fragment), as HLS plays it."""
    manifest = read_manifest(folder)
    files = manifest.track_files(track)
    init = (folder / files[0].file).read_bytes()
    problems = []
    for frag in files[1:]:
        data = init + (folder / frag.file).read_bytes()
        result = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", "pipe:0", "-fps_mode", "passthrough",
                                 "-enc_time_base:v", "demux", "-f", "null", "-"],  # as decode_errors
                                input=data, capture_output=True, timeout=60)
        if result.returncode != 0 or result.stderr.strip():
            problems.append(f"{frag.file}: {result.stderr.decode(errors='replace').strip()[:300]}")
    return problems
