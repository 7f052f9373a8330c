"""The README's calibration procedure, repeated: a network camera (live H.264 MPEG-TS over UDP) and the PulseAudio
microphone, the flash-and-beep signal from one ffmpeg clock (media.calibration.LiveRoom). One calibration
recording gives the camera's latency; then R recordings with it, each checked with `osce sync-check`: median and
spread (max - min) of the per-flash offsets, per run. Requirement: spread <= 10 ms in every run.

Plays sound into the shared PulseAudio sink `room`, so run it under the audio lock:

    flock /tmp/osce-audio.lock .venv/bin/python bench/bench_room_sync.py [--quick] [--copy]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import time
from pathlib import Path

from common import OSCE, log, report, run_child, workdir

from media.calibration import LiveRoom


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def record(video: str, seconds: float, out: Path, latency_ms: float) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    run_child([OSCE, "record", "--video", video, "--audio", "pulse", "--seconds", seconds, "--size", "640x360",
               "--video-latency-ms", latency_ms, "--out", out])
    return json.loads(run_child([OSCE, "sync-check", out], check=False).stdout)["tracks"]["cam0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 s recordings, 2 runs")
    parser.add_argument("--runs", type=int, help="recordings after the calibration (default 6, 2 with --quick)")
    parser.add_argument("--copy", action="store_true", help="record the camera by stream copy (copy:udp://…)")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    seconds = 10.0 if args.quick else 30.0
    runs = args.runs or (2 if args.quick else 6)
    root = workdir(args, "room-sync")
    port = free_udp_port()
    video = ("copy:" if args.copy else "") + f"udp://127.0.0.1:{port}?fifo_size=1000000&overrun_nonfatal=1"
    rows, checked = [], []
    with LiveRoom(f"udp://127.0.0.1:{port}?pkt_size=1316", "room", width=640, height=360):
        time.sleep(3.0)  # the sound server settles its buffer for a new player in its first seconds
        calibration = record(video, seconds, root / "calibration", 0.0)
        latency = calibration["suggested_camera_latency_ms"]
        log(f"calibration: {calibration}")
        rows.append(["calibration", calibration["pairs"], calibration["median_ms"], calibration["spread_ms"], 0.0])
        for run in range(runs):
            track = record(video, seconds, root / f"run{run}", latency)
            checked.append(track)
            rows.append([f"run {run + 1}", track["pairs"], track["median_ms"], track["spread_ms"], latency])
            log(f"run {run + 1}: {track}")
    spreads = [t["spread_ms"] for t in checked]
    medians = [t["median_ms"] for t in checked]
    print(f"UDP camera ({'stream copy' if args.copy else 'decoded and encoded'}) + PulseAudio microphone, "
          f"{seconds:g} s recordings, camera latency {latency} ms from the calibration recording")
    print(f"after calibration: median {min(medians):+.1f} to {max(medians):+.1f} ms, spread {min(spreads):.1f} to "
          f"{max(spreads):.1f} ms (requirement <= 10 ms): {'PASS' if max(spreads) <= 10 else 'FAIL'}")
    report("room_sync", ["recording", "pairs", "median_ms", "spread_ms", "latency_ms"], rows,
           {"seconds": seconds, "runs": runs, "copy": args.copy, "latency_ms": latency, "medians_ms": medians,
            "spreads_ms": spreads, "pass": max(spreads) <= 10})


if __name__ == "__main__":
    main()
