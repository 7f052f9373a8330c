"""CPR figures of an attempt recorded in two parts with a 6 s gap between them (the agent was restarted):
real synthetic footage (PyAV fMP4, `SyntheticChest`) in part-1 and part-2, analysed by the agent's
post-attempt analysis. Both parts count; the gap is no data, neither a pause nor compression time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from media.cpr.motion import SyntheticChest
from media.manifest import MANIFEST_NAME
from media.recorder import WARMUP_S
from station_agent.cpr_analysis import REPORT_NAME, build_report

RATE = 110.0
PERIOD = 60.0 / RATE
STARTED = datetime(2026, 1, 1, tzinfo=UTC)  # SyntheticChest.record's started_wall
GAP_S = 6.0
# (duration, compression runs) per part: two cycles each, with a 3 s hands-off between them
PARTS = ((20.0, [(1.0, 8.5), (11.5, 20.0)]), (14.0, [(0.5, 7.0), (10.0, 14.0)]))


def two_part_recording(folder: Path) -> list[list[float]]:
    """part-1 and part-2 of one attempt, part-2's media starting GAP_S after part-1's ends; the cycle starts."""
    cycles, wall = [], STARTED
    for number, (duration, runs) in enumerate(PARTS, start=1):
        starts = SyntheticChest.schedule(RATE, runs)
        part = SyntheticChest(size=(320, 180), duration=duration, rate=RATE, cycles=starts, seed=number).record(
            folder / f"part-{number}")
        manifest = part / MANIFEST_NAME  # the recorder would have written this part's own start time
        manifest.write_text(manifest.read_text().replace('"started_wall":"2026-01-01T00:00:00Z"',
                                                         f'"started_wall":"{wall.isoformat()}"', 1))
        cycles.append(starts)
        wall += timedelta(seconds=duration + GAP_S)
    return cycles


def hands_off(starts: list[float]) -> float:
    gaps = np.diff(starts)
    return float(sum(g - PERIOD for g in gaps if g >= PERIOD + 1.0))


def test_two_part_attempt_figures_cover_both_parts_and_the_gap_is_no_data(tmp_path: Path) -> None:
    folder = tmp_path / "d1-st1-two"
    cycles = two_part_recording(folder)
    origin = STARTED + timedelta(seconds=WARMUP_S)
    part2_from = PARTS[0][0] + GAP_S  # on the report's clock: seconds from part-1's media origin
    ended = part2_from + PARTS[1][0]
    job = {"attempt_id": folder.name, "folder": str(folder), "checklist": "01_basic_cpr_adult", "track": "cam0",
           "roi": None, "manikin_file": None, "reading_wall": (origin + timedelta(seconds=0.2)).isoformat(),
           "performing_wall": (origin + timedelta(seconds=0.5)).isoformat(),
           "ended_wall": (origin + timedelta(seconds=ended)).isoformat()}
    report = build_report(job)
    assert json.loads((folder / REPORT_NAME).read_text())["video"] == report["video"]
    video = report["video"]
    assert video["estimate"] is True and abs(video["rate_per_min"] - RATE) <= 5, video

    # both parts in time order; the seconds of the task with and without media
    assert [(p["part"], p["estimate"]) for p in video["parts"]] == [("part-1", True), ("part-2", True)]
    assert abs(video["parts"][1]["from_s"] - part2_from) < 0.05 and video["part"] == "part-1"
    assert video["attempt_s"] == round(ended - 0.5, 2) and abs(video["covered_s"] - (ended - 0.5 - GAP_S)) < 0.1
    [gap] = video["no_data_intervals"]
    assert abs(gap["start"] - PARTS[0][0]) < 0.1 and abs(gap["length"] - GAP_S) < 0.1, gap
    assert video["no_data_s"] == gap["length"]

    # compressions of both parts, each on the common clock
    total = len(cycles[0]) + len(cycles[1])
    assert abs(video["compressions"] - total) <= 2, (video["compressions"], total)
    times = np.asarray(video["compression_times"])
    assert np.all(np.diff(times) > 0) and not np.any((times > PARTS[0][0]) & (times < part2_from))
    assert abs(times[-1] - (part2_from + cycles[1][-1])) < 0.3

    # the gap is not a pause: only the two 3 s hands-off (one in each part) are
    expected_off = hands_off(cycles[0]) + hands_off(cycles[1])
    assert len(video["pauses"]) == 2, video["pauses"]
    assert all(p["start"] + p["length"] <= PARTS[0][0] + 0.1 or p["start"] >= part2_from - 0.1
               for p in video["pauses"]), video["pauses"]
    assert abs(video["hands_off_s"] - expected_off) <= 0.6, (video["hands_off_s"], expected_off)
    # ... and not compression time: the fraction is over the recorded part of the compression span
    span = part2_from + cycles[1][-1] + PERIOD - cycles[0][0]
    expected = (span - GAP_S - expected_off) / (span - GAP_S)
    as_compressions, as_pause = (span - expected_off) / span, (span - GAP_S - expected_off) / span
    assert abs(video["compression_fraction"] - expected) <= 0.015, (video["compression_fraction"], expected)
    assert min(abs(video["compression_fraction"] - x) for x in (as_compressions, as_pause)) > 0.015
    assert 0.8 <= video["coverage"] < 0.9  # the gap is part of the span but not covered

    # the examiner reads it beside the items: a lower bound, and how much is missing
    line = f"Нет записи 6,0 с из {ended - 0.5:.1f} с (запись из 2 частей)".replace(".", ",")
    assert any(x.startswith(line) for x in report["items"]["12"]), report["items"]["12"]
    assert any(x.startswith("Компрессий (видео): не менее ") for x in report["items"]["10"]), report["items"]["10"]
