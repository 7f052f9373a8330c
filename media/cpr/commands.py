"""`osce cpr analyze` (figures from a recording's video) and `osce cpr import` (manikin feedback, aligned)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    cpr = sub.add_parser("cpr", help="CPR quality figures from the video and from a feedback manikin (JSON)",
                         description="Exit status: 0 figures found, 1 no estimate from the video (or no "
                                     "alignment for import), 2 unreadable input.")
    cmds = cpr.add_subparsers(dest="cpr_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("analyze", help="compression rate, count, pauses, fraction from a recording's video")
    p.add_argument("recording", type=Path, help="a recording folder (manifest.jsonl + camN/ fragments)")
    p.add_argument("--track", default="cam0", help="the camera track that sees the chest (default cam0)")
    p.add_argument("--start", type=float, default=0.0, metavar="S",
                   help="start of the task, seconds of the recording clock (for the time to first compression)")
    p.add_argument("--roi", metavar="X,Y,W,H", help="region of the chest as fractions of the frame (default: found)")
    p.add_argument("--checklist", default="01_basic_cpr_adult", help="checklist stem for the item strings")
    p.set_defaults(func=cmd_analyze)

    p = cmds.add_parser("import", help="import a manikin feedback CSV, align it to a recording, print figures")
    p.add_argument("feedback", type=Path, help="feedback CSV (media/cpr/FORMATS.md)")
    p.add_argument("--recording", type=Path, required=True, help="the attempt's recording folder")
    p.add_argument("--offset", type=float, metavar="S",
                   help="recording time = manikin time + S (default: found from the video's compressions)")
    p.add_argument("--track", default="cam0")
    p.add_argument("--start", type=float, default=0.0, metavar="S")
    p.add_argument("--checklist", default="01_basic_cpr_adult")
    p.set_defaults(func=cmd_import)


def _roi(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"osce cpr: --roi {text!r}: expected X,Y,W,H fractions, e.g. 0.3,0.3,0.4,0.4") from None
    return x, y, w, h


def _progress(t: float) -> None:
    print(f"analysed {t:.0f} s of video", file=sys.stderr, flush=True)


def cmd_analyze(args: argparse.Namespace) -> int:
    from media.cpr.figures import cpr_report
    from media.cpr.motion import analyse_recording
    from media.manifest import ManifestError

    try:
        video = analyse_recording(args.recording, args.track, args.start, _roi(args.roi), _progress)
    except (FileNotFoundError, ManifestError) as exc:
        print(f"osce cpr analyze: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(cpr_report(video, None, None, args.checklist), ensure_ascii=False, indent=2))
    return 0 if video.get("estimate") else 1


def cmd_import(args: argparse.Namespace) -> int:
    from media.cpr.figures import cpr_report, manikin_figures
    from media.cpr.manikin import FeedbackError, align, read_feedback
    from media.cpr.motion import analyse_recording
    from media.manifest import ManifestError

    try:
        feedback = read_feedback(args.feedback)
        video = analyse_recording(args.recording, args.track, args.start, None, _progress)
    except (FileNotFoundError, ManifestError, FeedbackError) as exc:
        print(f"osce cpr import: {exc}", file=sys.stderr)
        return 2
    aligned, alignment = align(feedback, video, args.offset)
    aligned_ok = alignment["offset_s"] is not None
    manikin = manikin_figures(aligned, args.start if aligned_ok else None)
    print(json.dumps(cpr_report(video, manikin, alignment, args.checklist), ensure_ascii=False, indent=2))
    return 0 if aligned_ok else 1
