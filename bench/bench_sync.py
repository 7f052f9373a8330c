"""A/V sync of real-time recordings from drifting synthetic devices, against the checker's own floor.

Two `osce record` runs in parallel, camera skew -50 ppm, microphone skew +100 ppm and +1000 ppm
(both 5 ms delivery jitter), then `osce sync-check`. Floor: bare ffmpeg's sample-exact calibration
clip (media.calibration.clip_command) through the same checker; its offset is the checker's error.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from common import OSCE, Child, log, median, parse_args, report, run_child, workdir

from media.calibration import clip_command

SIZE = (640, 360)
AUDIO_SKEWS = (100, 1000)
VIDEO_SPEC = "synthetic:skew_ppm=-50,jitter_ms=5"
FIELDS = ("median_ms", "max_abs_ms", "spread_ms", "drift_ms_per_hour", "drift_se_ms_per_hour", "pairs")
LIMITS = {"median_ms": 10.0, "max_abs_ms": 20.0, "drift_ms_per_hour": 5.0}


def sync_check(path: Path) -> dict[str, Any]:
    tracks = json.loads(run_child([OSCE, "sync-check", path], check=False).stdout)["tracks"]
    track = next(iter(tracks.values()))
    # Standard error of the fitted drift (offsets' stdev over evenly spread flashes): a 60 s run
    # cannot resolve 5 ms/h (about +-18 ms/h at 2 SE), a 600 s run can (about +-1 ms/h).
    spread_t = max(track.get("span_s", 0.0), 1e-9) / math.sqrt(12.0)
    track["drift_se_ms_per_hour"] = round(track.get("stdev_ms", 0.0) / (math.sqrt(max(track.get("pairs", 1), 1))
                                                                        * spread_t) * 3600.0, 3)
    return track


def record_pair(root: Path, seconds: float, repeat: int) -> dict[int, dict[str, Any]]:
    """Both audio skews recorded at once (2 children), then checked; the folders are kept."""
    children = {}
    for ppm in AUDIO_SKEWS:
        out = root / f"r{repeat}-ppm{ppm}"
        shutil.rmtree(out, ignore_errors=True)
        children[ppm] = (out, Child([OSCE, "record", "--video", VIDEO_SPEC, "--audio",
                                     f"synthetic:skew_ppm={ppm},jitter_ms=5", "--seconds", seconds,
                                     "--size", f"{SIZE[0]}x{SIZE[1]}", "--out", out]))
    results = {}
    for ppm, (out, child) in children.items():
        run = child.wait()
        stats = json.loads(run.stdout)["stats"]
        results[ppm] = {**sync_check(out), "cpu_s": run.cpu, "dropped": stats["cam0"]["dropped"],
                        "cam_drift_ppm": stats["cam0"]["drift_ppm"], "audio": stats.get("audio"),
                        "load_avg": os.getloadavg()[1]}
        log(f"ppm={ppm}: " + ", ".join(f"{k}={results[ppm].get(k)}" for k in
                                      (*FIELDS, "cpu_s", "dropped", "cam_drift_ppm", "audio", "load_avg")))
    return results


def main() -> None:
    args = parse_args(__doc__)
    seconds = 60.0 if args.quick else 600.0
    root = workdir(args, "sync")
    runs = []
    for i in range(args.repeats):
        log(f"repeat {i + 1}/{args.repeats}: recording {seconds:g} s twice in parallel")
        runs.append(record_pair(root, seconds, i))
    clip = root / "floor.mp4"
    run_child(clip_command(str(clip), seconds, *SIZE))
    floor = sync_check(clip)
    log("floor: " + ", ".join(f"{k}={floor.get(k)}" for k in FIELDS))

    summary: dict[str, Any] = {}
    rows = []
    for ppm in AUDIO_SKEWS:
        med = {k: median([r[ppm][k] for r in runs]) for k in (*FIELDS, "cpu_s", "dropped")}
        # The worst repeat decides the requirement; the medians are what the README quotes.
        worst = {k: max(abs(r[ppm][k]) for r in runs) for k in LIMITS}
        ok = all(worst[k] <= limit for k, limit in LIMITS.items())
        # Failing on drift alone while 5 ms/h lies within 2 SE of the fit: the run was too short to tell.
        unresolved = not ok and all(worst[k] <= LIMITS[k] for k in ("median_ms", "max_abs_ms")) and (
            worst["drift_ms_per_hour"] - 2 * med["drift_se_ms_per_hour"] <= LIMITS["drift_ms_per_hour"])
        verdict = "PASS" if ok else "UNRESOLVED" if unresolved else "FAIL"
        summary[f"audio_{ppm}ppm"] = {**med, "worst": worst, "verdict": verdict,
                                      "max_abs_vs_floor": round(med["max_abs_ms"] / max(floor["max_abs_ms"], 1e-3), 2)}
        rows.append([f"ours, mic {ppm:+d} ppm", med["median_ms"], med["max_abs_ms"], med["spread_ms"],
                     med["drift_ms_per_hour"], 2 * med["drift_se_ms_per_hour"], int(med["pairs"]), verdict])
    rows.append(["floor (ffmpeg clip)", floor["median_ms"], floor["max_abs_ms"], floor["spread_ms"],
                 floor["drift_ms_per_hour"], 2 * floor["drift_se_ms_per_hour"], floor["pairs"], "-"])
    print(f"osce record {seconds:g} s at {SIZE[0]}x{SIZE[1]}, camera {VIDEO_SPEC}; medians of {args.repeats} repeat(s)")
    print("requirement: |median| <= 10 ms, max <= 20 ms, |drift| <= 5 ms/h")
    report("sync", ["run", "median_ms", "max_abs_ms", "spread_ms", "drift_ms/h", "+-2SE", "pairs", "req"], rows,
           {"seconds": seconds, "repeats": args.repeats, "size": f"{SIZE[0]}x{SIZE[1]}", **summary,
            "floor": {k: floor[k] for k in FIELDS}, "runs": runs})


if __name__ == "__main__":
    main()
