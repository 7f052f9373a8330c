"""CPU per passthrough (stream-copy) camera: `osce record --video copy:udp://…` against `ffmpeg -c copy`
of the same live 720p25 H.264 MPEG-TS stream (media.calibration.LiveRoom on a UDP port).

Each side runs for N seconds and for 1 second; the difference is the steady-state cost per minute,
free of start-up (for ours: interpreter, imports, stream probing, the recorder's 1.5 s warm-up).
The import cost alone is measured too. The LiveRoom's own CPU is never counted (wait4 per child).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from common import FFMPEG, OSCE, log, median, parse_args, report, run_child, workdir

from media.calibration import LiveRoom
from media.track import MOVFLAGS
from scripts.harness.ports import free_udp_port

W, H = 1280, 720


def ours(url: str, seconds: float, out: Path) -> tuple[float, int]:
    run = run_child([OSCE, "record", "--video", f"copy:{url}", "--seconds", seconds, "--out", out])
    return run.cpu, json.loads(run.stdout)["stats"]["cam0"]["frames"]


def ffmpeg(url: str, seconds: float, out: Path) -> float:
    return run_child([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", url, "-map", "0:v", "-c", "copy",
                      "-t", seconds, "-f", "mp4", "-movflags", MOVFLAGS, out]).cpu


def main() -> None:
    args = parse_args(__doc__)
    seconds = 10.0 if args.quick else 30.0
    root = workdir(args, "passthrough")
    port = free_udp_port()
    url = f"udp://127.0.0.1:{port}?fifo_size=1000000&overrun_nonfatal=1"
    imports = [run_child([sys.executable, "-c", "import media.commands, media.recorder, media.sources.passthrough"]).cpu
               for _ in range(args.repeats)]
    res: dict[str, list[float]] = {k: [] for k in ("ours_n", "ours_1", "ffmpeg_n", "ffmpeg_1")}
    frames = []
    with LiveRoom(f"udp://127.0.0.1:{port}?pkt_size=1316", "room", W, H):
        time.sleep(2.0)
        for i in range(args.repeats):
            cpu, n = ours(url, seconds, root / f"ours{i}")
            res["ours_n"].append(cpu)
            frames.append(n)
            res["ours_1"].append(ours(url, 1.0, root / f"ours{i}-1s")[0])
            res["ffmpeg_n"].append(ffmpeg(url, seconds, root / f"ffmpeg{i}.mp4"))
            res["ffmpeg_1"].append(ffmpeg(url, 1.0, root / f"ffmpeg{i}-1s.mp4"))
            log(f"repeat {i + 1}: " + ", ".join(f"{k}={v[-1]:.3f} s" for k, v in res.items()) + f", frames={n}")
    med = {k: median(v) for k, v in res.items()}
    steady = {side: (med[f"{side}_n"] - med[f"{side}_1"]) / (seconds - 1.0) * 60.0 for side in ("ours", "ffmpeg")}
    whole = {side: med[f"{side}_n"] / seconds * 60.0 for side in ("ours", "ffmpeg")}
    ratio = steady["ours"] / steady["ffmpeg"]
    rows = [["ffmpeg -c copy (baseline)", med["ffmpeg_n"], med["ffmpeg_1"], steady["ffmpeg"], 1.0],
            ["osce record copy:", med["ours_n"], med["ours_1"], steady["ours"], ratio]]
    print(f"live {W}x{H}@25 H.264 over UDP, {seconds:g} s runs, medians of {args.repeats} repeat(s); "
          f"python import cost {median(imports):.3f} CPU s; ours recorded {median(frames):.0f} frames")
    print(f"whole-run CPU per minute (start-up included): ours {whole['ours']:.3f} s, ffmpeg {whole['ffmpeg']:.3f} s, "
          f"ratio {whole['ours'] / whole['ffmpeg']:.2f}")
    report("passthrough_cpu", ["recorder", f"cpu_s_{seconds:g}s", "cpu_s_1s", "steady_cpu_s_per_min", "vs_ffmpeg"],
           rows, {"seconds": seconds, "repeats": args.repeats, "steady_cpu_s_per_min": steady,
                  "whole_run_cpu_s_per_min": whole, "ratio_steady": round(ratio, 3),
                  "ratio_whole_run": round(whole["ours"] / whole["ffmpeg"], 3),
                  "python_import_cpu_s": median(imports), "startup_cpu_s": {"ours": med["ours_1"],
                                                                           "ffmpeg": med["ffmpeg_1"]},
                  "frames": frames, "raw": res})


if __name__ == "__main__":
    main()
