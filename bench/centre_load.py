"""How large a centre fits on this machine (issue 9, load): the server and N station agents as real processes
(synthetic 640x360 15 fps camera + microphone each, recording, uploading and streaming live), V observers
watching each station, examiners marking; no faults. For N = 2, 4, 6, ... it measures, over the middle of
one long performing phase: CPU of the server and of the agents (from /proc, % of one core), frames the
recorders dropped, the longest gap a viewer saw in its live picture, and whether the upload queues kept up.
It stops after the first N where the machine saturates (total CPU over 90 % of all cores, dropped frames,
or a live gap over 2 s). The baseline ratio is the CPU per station at N against the CPU per station at 2.

    .venv/bin/python bench/centre_load.py                  # N = 2, 4, 6, 8, 10, 12; 2 viewers per station
    .venv/bin/python bench/centre_load.py --quick          # N = 1, 2
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from common import ROOT, log, parse_args, report, workdir

sys.path.insert(0, str(ROOT))
from media.manifest import MANIFEST_NAME, read_manifest  # noqa: E402
from scripts.harness.examday import ExamDay, Plan  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


async def one(root: Path, n: int, viewers: int, window_s: float) -> dict[str, float]:
    plan = Plan(stations=n, candidates=n, reading_s=5, performing_s=int(window_s) + 40, changeover_s=5,
                start_in_s=15, width=640, height=360, fps=15, faults=(), viewers=viewers)
    day = ExamDay(root, plan)
    day.setup()
    run = asyncio.create_task(day.run())
    try:
        # measure from 20 s into performing (warm-up, first uploads done) for window_s
        await asyncio.sleep(plan.start_in_s + plan.reading_s + 20 - day.now())
        pids = {"server": day.server.pid} | {st.code: st.proc.pid for st in day.stations}  # type: ignore[union-attr]
        before, t0 = {k: cpu_s(p) for k, p in pids.items()}, time.monotonic()
        live_from = day.now()
        await asyncio.sleep(window_s)
        wall = time.monotonic() - t0
        used = {k: (cpu_s(p) - before[k]) / wall * 100 for k, p in pids.items()}
        live_to = day.now()
        gaps = []
        for st in day.stations:
            times = [t for t in st.live if live_from <= t <= live_to]
            gaps.append(max((b - a for a, b in zip([live_from, *times], [*times, live_to], strict=False)),
                            default=window_s))
    finally:  # only the first slot (every station recording at once) is measured
        if not run.done():
            run.cancel()
        for st in day.stations:
            if st.proxy.server is not None:
                await st.proxy.cut()
        day.stop_all()
    dropped = 0
    for st in day.stations:
        for manifest in (st.folder / "data").rglob(MANIFEST_NAME):
            end = read_manifest(manifest.parent).end or {}
            dropped += sum(int(v.get("dropped", 0)) for v in (end.get("stats") or {}).values() if isinstance(v, dict))
    agents = sum(v for k, v in used.items() if k != "server")
    return {"stations": n, "viewers": n * viewers, "server_cpu_pct": round(used["server"], 1),
            "agents_cpu_pct": round(agents, 1), "per_station_pct": round((agents + used["server"]) / n, 1),
            "total_pct_of_machine": round((agents + used["server"]) / os.cpu_count(), 1),  # type: ignore[operator]
            "dropped_frames": dropped, "longest_live_gap_s": round(max(gaps), 2)}


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    root = workdir(args, "centre-load")
    steps = (1, 2) if args.quick else (2, 4, 6, 8, 10, 12)
    window = 20.0 if args.quick else 60.0
    rows, results = [], []
    for n in steps:
        log(f"{n} stations")
        r = asyncio.run(one(root / f"n{n}", n, 2, window))
        results.append(r)
        rows.append([r["stations"], r["viewers"], r["server_cpu_pct"], r["agents_cpu_pct"], r["per_station_pct"],
                     r["total_pct_of_machine"], r["dropped_frames"], r["longest_live_gap_s"]])
        if r["total_pct_of_machine"] > 90 or r["dropped_frames"] > 0 or r["longest_live_gap_s"] > 2.0:
            log(f"saturated at {n} stations")
            break
    base = results[0]["per_station_pct"]
    summary = {"steps": results, "largest_unsaturated": max([r["stations"] for r in results
                                                                if r["total_pct_of_machine"] <= 90
                                                                and r["dropped_frames"] == 0
                                                                and r["longest_live_gap_s"] <= 2.0], default=0),
               "per_station_cost_ratio_last_vs_first": round(results[-1]["per_station_pct"] / base, 2)}
    report("centre_load", ["stations", "viewers", "server %", "agents %", "per station %", "machine %",
                           "dropped", "live gap s"], rows, summary)


if __name__ == "__main__":
    main()
