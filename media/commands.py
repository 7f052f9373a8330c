"""`osce record`, `osce sync-check`, `osce calibration-clip`, `osce verify-recording`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from media.manifest import ManifestError, verify_recording


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record one attempt from cameras and a microphone")
    p.add_argument("--video", action="append", required=True, metavar="SRC",
                   help="synthetic[:skew_ppm=..,jitter_ms=..,latency_ms=..], a device index, a URL (rtsp:// copies "
                        "H.264/H.265 and decodes the rest), copy:URL, or decode:rtsp://… (always decode and encode)")
    p.add_argument("--audio", metavar="SRC",
                   help="synthetic[:...], a PortAudio device index or name, or camera:N (camera N's own microphone, "
                        "N counted from 0 in --video order; `camera` is camera:0)")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for the recording (created)")
    p.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT (default 1280x720)")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--station", default="station", help="station name burned into synthetic video")
    p.add_argument("--video-latency-ms", type=float, action="append", default=[], metavar="MS",
                   help="per --video, in order: its capture latency (from calibration)")
    p.add_argument("--audio-latency-ms", type=float, default=0.0, metavar="MS")
    p.add_argument("--transport", action="append", default=[], choices=("tcp", "udp"),
                   help="per --video, in order: an RTSP camera's transport (default tcp, interleaved)")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("sync-check", help="A/V offset of a recording from its flash-and-beep markers (JSON)")
    p.add_argument("path", type=Path, help="a recording folder or a media file")
    p.set_defaults(func=cmd_sync_check)

    p = sub.add_parser("calibration-clip", help="write the flash-and-beep clip to play in a room")
    p.add_argument("out", type=Path)
    p.add_argument("--seconds", type=float, default=30.0)
    p.set_defaults(func=cmd_calibration_clip)

    p = sub.add_parser("verify-recording", help="check a recording folder against its manifest",
                       description="Every listed file present with its SHA-256. This shows that nothing was lost or "
                                   "damaged since it was recorded, not who wrote it: whoever can change the files can "
                                   "change the manifest too. The archived copy and who made it: `osce verify` on an "
                                   "export package, with the centre's key.")
    p.add_argument("path", type=Path)
    p.set_defaults(func=cmd_verify_recording)
    from media.cpr.commands import register as _cpr; _cpr(sub)  # noqa: E702, I001 - `osce cpr` (issue 10)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"osce record: --size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320) or w % 2 or h % 2:
        raise SystemExit(f"osce record: --size {text!r}: width and height must be even, 16..7680 x 16..4320")
    return w, h


def cmd_record(args: argparse.Namespace) -> int:
    from media.recorder import RecorderConfig, SourceConfig, record
    from media.sources import SourceError
    from media.sources.spec import masked

    width, height = _size(args.size)
    if args.seconds <= 0:
        raise SystemExit("osce record: --seconds must be positive")
    if len(args.video_latency_ms) > len(args.video):
        raise SystemExit("osce record: more --video-latency-ms than --video")
    latencies = args.video_latency_ms + [0.0] * (len(args.video) - len(args.video_latency_ms))
    if len(args.transport) > len(args.video):
        raise SystemExit("osce record: more --transport than --video")
    transports = args.transport + ["tcp"] * (len(args.video) - len(args.transport))
    config = RecorderConfig(
        out_dir=args.out, videos=[SourceConfig(s, lat, transport=tr)
                                  for s, lat, tr in zip(args.video, latencies, transports, strict=True)],
        audio=SourceConfig(args.audio, args.audio_latency_ms) if args.audio else None,
        width=width, height=height, fps=args.fps, station=args.station)
    try:
        recorder, stats = record(config, args.seconds)
    except SourceError as exc:
        print(f"osce record: {masked(str(exc))}", file=sys.stderr)
        return 2
    if recorder.stop_reason == "source_changed":
        print("osce record: a camera came back with another stream; the recording stopped there (the station "
              "agent goes on in a new part)", file=sys.stderr)
    print(json.dumps({"out": str(args.out), "reason": recorder.stop_reason, "stats": stats},
                     ensure_ascii=False, indent=2))
    return 1 if recorder.failures else 0


def cmd_sync_check(args: argparse.Namespace) -> int:
    from media.synccheck import sync_check

    try:
        report = sync_check(args.path)
    except (FileNotFoundError, ManifestError) as exc:
        print(f"osce sync-check: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0 if all("median_ms" in t for t in report["tracks"].values()) else 1


def cmd_calibration_clip(args: argparse.Namespace) -> int:
    from media.calibration import clip_command

    subprocess.run(clip_command(str(args.out), args.seconds), check=True, capture_output=True)
    print(f"{args.out}: play it in the room, record it, then run: osce sync-check RECORDING")
    return 0


def cmd_verify_recording(args: argparse.Namespace) -> int:
    try:
        problems = verify_recording(args.path)
    except ManifestError as exc:
        print(f"osce verify-recording: {exc}", file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    if not problems:
        print(f"{args.path}: every listed file is present and matches its SHA-256")
    return 1 if problems else 0
