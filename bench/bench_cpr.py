"""CPR video analysis speed: a 720p25 recording analysed whole, against bare decoding of the same file.

Input: 60 s (20 s with --quick) of synthetic chest compressions (`media.cpr.motion.SyntheticChest`,
110/min with two pauses, light noise) written through the recorder's own track writer (H.264,
2 s fMP4 fragments, manifest). Measured, median of the repeats, wall clock and process CPU:

- analysis: `analyse_recording` (PyAV decode through ChainedReader, scale to 160 px grey, Farneback
  flow per frame, series analysis); figure of merit = media seconds / analysis seconds (target ≥ 4);
- baseline: bare PyAV decode of the same track (same reader, same threading), every frame, no conversion.
"""

from __future__ import annotations

import time
from pathlib import Path

import av
from common import ProcessCPU, log, median, parse_args, report, workdir

from media.cpr.motion import SyntheticChest, analyse_recording
from media.fragments import ChainedReader
from media.manifest import read_manifest

SIZE = (1280, 720)
FPS = 25.0
RATE = 110
TARGET = 4.0


def bare_decode(folder: Path) -> int:
    files = read_manifest(folder).track_files("cam0")
    frames = 0
    with ChainedReader([folder / f.file for f in files]) as raw, av.open(raw, "r", format="mp4") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            frames += 1
    return frames


def synthetic_cpr_recording(folder: Path, seconds: float) -> None:
    """Compressions at RATE/min in three cycles with pauses, recorded once into folder (kept between runs)."""
    third = seconds / 3
    chest = SyntheticChest(size=SIZE, fps=FPS, duration=seconds, rate=RATE, noise=3.0,
                           cycles=SyntheticChest.schedule(RATE, [(2.0, third), (third + 3, 2 * third),
                                                                 (2 * third + 4, seconds)]))
    if not (folder / "manifest.jsonl").exists():
        log(f"writing {seconds:.0f} s of {SIZE[0]}x{SIZE[1]}p{FPS:.0f} synthetic CPR to {folder}")
        chest.record(folder)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    seconds = 20.0 if args.quick else 60.0
    folder = workdir(args, "cpr") / "rec"
    synthetic_cpr_recording(folder, seconds)
    rows, decode_wall, decode_cpu, wall, cpu = [], [], [], [], []
    result: dict = {}
    for i in range(args.repeats):
        with ProcessCPU() as d:
            frames = bare_decode(folder)
        with ProcessCPU() as a:
            result = analyse_recording(folder)
        decode_wall.append(d.wall)
        decode_cpu.append(d.cpu)
        wall.append(a.wall)
        cpu.append(a.cpu)
        log(f"repeat {i + 1}: decode {d.wall:.2f} s, analysis {a.wall:.2f} s ({frames} frames)")
        time.sleep(0.5)
    ok = bool(result.get("estimate")) and abs(result["rate_per_min"] - RATE) <= 5
    realtime = seconds / median(wall)
    rows.append(["bare PyAV decode", median(decode_wall), median(decode_cpu), seconds / median(decode_wall)])
    rows.append(["analyse_recording", median(wall), median(cpu), realtime])
    report("cpr_video", ["step", "wall_s", "cpu_s", "media_s/wall_s"], rows, {
        "media_s": seconds, "size": f"{SIZE[0]}x{SIZE[1]}", "fps": FPS, "repeats": args.repeats,
        "decode_wall_s": round(median(decode_wall), 3), "analysis_wall_s": round(median(wall), 3),
        "analysis_cpu_s": round(median(cpu), 3), "realtime_ratio": round(realtime, 2),
        "analysis_over_decode": round(median(wall) / median(decode_wall), 2), "target_ratio": TARGET,
        "meets_target": realtime >= TARGET, "rate_found": result.get("rate_per_min"), "rate_true": RATE,
        "estimate_ok": ok})


if __name__ == "__main__":
    main()
