"""A whole exam day under faults (issue 9): the server and N station agents as real processes, two examiners per
station marking on the tablet API, and one fault of each kind on a seeded schedule (agent kill -9, server
kill -9, network cut, frozen camera, silent microphone, full disk, a station's system clock stepped). Prints the
README's table: per fault the longest live-view outage and the time until media flowed (or the warning cleared)
again; in total the media hours, and fragments, bytes and marks lost, doubled or misplaced on the timeline.
The ratio is media recorded / media scheduled (cam0).

    .venv/bin/python bench/examday.py                 # 6 stations in two circuits, 12 candidates, 20 minutes
    .venv/bin/python bench/examday.py --quick         # 3 stations, 3 short attempts (what CI runs)

The harness is scripts/harness/examday.py; the same checks run in tests/examday/test_examday.py.
"""

from __future__ import annotations

import asyncio
import json
import sys

from common import ROOT, parse_args, report, workdir

sys.path.insert(0, str(ROOT))
from scripts.harness.examday import Plan, simulate, table  # noqa: E402


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    root = workdir(args, "examday")
    if args.quick:
        plan = Plan(stations=3, candidates=3, reading_s=4, performing_s=24, changeover_s=6)
    else:  # 6 slots of 30 s reading + 150 s performing + 20 s changeover: 20 minutes of exam time, 640x360 15 fps
        plan = Plan(stations=6, candidates=12, reading_s=30, performing_s=150, changeover_s=20, fault_s=15.0,
                    width=640, height=360, fps=15)
    result = asyncio.run(simulate(root, plan))
    print(table(result))
    scheduled_h = result["attempts"] * result["expected_attempt_s"] / 3600
    rows = [[f["kind"], "server" if f["station"] < 0 else f"st{f['station'] + 1}", round(f["at_s"]),
             f["live_outage_s"], f["detected_s"], f["recovered_s"]] for f in result["faults"]]
    summary = {k: v for k, v in result.items() if k not in ("log", "faults", "verify_output")}
    summary["exam_minutes"] = round(plan.slot_s * plan.slots / 60, 1)
    summary["media_ratio_recorded_vs_scheduled"] = round(result["media_hours"] / scheduled_h, 4)
    report("examday", ["fault", "where", "at s", "live outage s", "detected s", "recovered s"], rows, summary)
    (root / "result.json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
