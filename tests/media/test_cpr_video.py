"""CPR figures from video: synthetic chest footage with known compressions, pauses and disturbances."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from media.cpr.figures import figures_for_checklist
from media.cpr.motion import (
    FlowGrid,
    LiveCprAnalyser,
    LiveTap,
    SyntheticChest,
    _rate,
    analyse_recording,
    analyse_series,
    rate_bands,
)
from media.sources.base import RawFrame
from tests.media.conftest import osce

SIZE = (320, 240)


def truth(chest: SyntheticChest) -> dict:
    """Pauses (start, length) and figures as generated."""
    period = 60.0 / chest.rate
    c = np.asarray(chest.cycles)
    gaps = np.diff(c)
    pauses = [(c[i] + period, gaps[i] - period) for i in np.flatnonzero(gaps > period + 0.5)]
    span = c[-1] + period - c[0]
    return {"pauses": pauses, "count": c.size, "first": c[0],
            "ccf": (span - sum(p[1] for p in pauses)) / span}


def analyse_frames(chest: SyntheticChest, start: float = 0.0) -> dict:
    flow = FlowGrid()
    for frame, t in chest.frames():
        flow.feed(frame, t)
    return analyse_series(flow.motion, start)


CASES = [
    # rate, runs of compressions (s), disturbances
    (80, [(1.5, 9.0), (11.5, 20.0)], {"noise": 6.0}),
    (100, [(3.0, 10.0), (15.0, 20.0)], {"ramp": 0.3, "occlude": 0.45, "jitter": 0.06}),
    (120, [(1.0, 7.0), (9.0, 14.0), (18.0, 20.0)], {"noise": 8.0, "occlude": 0.3}),
    (140, [(2.0, 11.0), (13.5, 20.0)], {"noise": 5.0, "ramp": 0.25, "amplitude": 0.03}),
]


@pytest.mark.parametrize(("rate", "runs", "extra"), CASES, ids=[f"{c[0]}per_min" for c in CASES])
def test_rate_count_pauses_and_fraction_from_periodic_chest_motion(rate, runs, extra):
    extra = dict(extra)
    cycles = SyntheticChest.schedule(rate, runs, jitter=extra.pop("jitter", 0.0), seed=rate)
    chest = SyntheticChest(size=SIZE, duration=20.5, rate=rate, cycles=cycles, seed=rate, **extra)
    want = truth(chest)
    got = analyse_frames(chest, start=0.5)
    assert got["estimate"] is True and got["confidence"] >= 0.5, got
    assert got["rate_per_min"] == pytest.approx(rate, abs=5)
    assert abs(got["compressions"] - want["count"]) <= 1
    assert len(got["pauses"]) == len(want["pauses"]), (got["pauses"], want["pauses"])
    for p, (start, length) in zip(got["pauses"], want["pauses"], strict=True):
        assert p["start"] == pytest.approx(start, abs=0.5)
        assert p["length"] == pytest.approx(length, abs=0.5)
    assert got["time_to_first_compression_s"] == pytest.approx(want["first"] - 0.5, abs=0.3)
    assert got["compression_fraction"] == pytest.approx(want["ccf"], abs=0.04)
    rates = [w["rate"] for w in got["rate_series"] if w["rate"] is not None]
    assert len(rates) >= 5 and all(abs(r - rate) <= 5 for r in rates), rates
    # During a pause longer than a window there is no rate, not a made-up one.
    long_pauses = [p for p in want["pauses"] if p[1] >= 4.0]
    for start, length in long_pauses:
        mid = start + length / 2
        assert all(w["rate"] is None for w in got["rate_series"] if abs(w["t"] - mid) < 0.6)


def test_static_scene_gives_no_estimate():
    chest = SyntheticChest(size=SIZE, duration=12.0, cycles=[], noise=8.0, ramp=0.3, seed=3)
    got = analyse_frames(chest)
    assert got["estimate"] is None and got["reason"] == "no_motion"
    strings = figures_for_checklist(got, None)
    assert strings[16] == ["Частота (видео): нет оценки — нет движения в кадре"]


def test_globally_shaking_camera_gives_no_estimate():
    chest = SyntheticChest(size=SIZE, duration=12.0, rate=110, cycles=SyntheticChest.schedule(110, [(1, 12)]),
                           shake=0.02, seed=4)
    got = analyse_frames(chest)
    assert got["estimate"] is None and got["reason"] == "camera_moving", got


def test_chest_hidden_for_the_whole_video_gives_no_estimate():
    chest = SyntheticChest(size=SIZE, duration=12.0, rate=110, cycles=SyntheticChest.schedule(110, [(1, 12)]),
                           occlude=1.2, noise=4.0, seed=5)
    got = analyse_frames(chest)
    assert got["estimate"] is None, got


class Wandering(SyntheticChest):
    """Something in view moves to a new place at irregular times (not compressions)."""

    def depth(self, t: float) -> float:
        steps = np.cumsum(np.random.default_rng(self.seed).uniform(0.2, 1.5, 100))
        return float(np.random.default_rng(int(np.searchsorted(steps, t)) + 100 * self.seed).uniform(0, 1))


@pytest.mark.parametrize("seed", [1, 2])
def test_irregular_motion_gives_no_estimate(seed):
    got = analyse_frames(Wandering(size=SIZE, duration=12.0, noise=4.0, amplitude=0.08, seed=seed))
    assert got["estimate"] is None and got["reason"] in ("not_periodic", "too_few_compressions"), got


def test_live_analyser_gives_rolling_figures_while_frames_arrive():
    rate = 110
    cycles = SyntheticChest.schedule(rate, [(1, 9), (13, 20)])
    chest = SyntheticChest(size=SIZE, duration=20.0, rate=rate, cycles=cycles, noise=4.0, seed=6)
    live = LiveCprAnalyser()
    tap = LiveTap(live, origin=1000.0)  # as media.recorder.tap_sources calls it, on the shared clock
    seen = {}
    for frame, t in chest.frames():
        tap("cam0", RawFrame(frame, device_t=t, observed_t=1000.0 + t))
        tap("cam1", RawFrame(frame[::-1], device_t=t, observed_t=1000.0 + t))  # another camera: ignored
        if tap._queue.qsize() > 40 or t in (8.0, 12.0):
            tap.wait_idle()
        if t == 8.0:
            seen["during"] = live.current()
        if t == 12.0:
            seen["pause"] = live.current()
    tap.close()
    assert tap.dropped == 0
    assert seen["during"]["rate"] == pytest.approx(rate, abs=5)
    assert seen["pause"]["rate"] is None
    assert seen["pause"]["hands_off_s"] == pytest.approx(12.0 - max(c + 60 / rate for c in cycles if c < 9), abs=0.5)
    final = live.figures()
    assert final["estimate"] and final["rate_per_min"] == pytest.approx(rate, abs=5)
    assert [round(p["start"]) for p in final["pauses"]] == [9]


def test_recording_folder_through_fragments_and_the_cli(tmp_path):
    rate = 105
    cycles = SyntheticChest.schedule(rate, [(2, 8), (11, 16)])
    chest = SyntheticChest(size=SIZE, duration=16.0, rate=rate, cycles=cycles, noise=4.0, seed=7)
    folder = chest.record(tmp_path / "rec")
    want = truth(chest)
    got = analyse_recording(folder, "cam0", start=1.0)
    assert got["estimate"] and got["rate_per_min"] == pytest.approx(rate, abs=5)
    assert got["pauses"][0]["start"] == pytest.approx(want["pauses"][0][0], abs=0.5)
    assert got["time_to_first_compression_s"] == pytest.approx(1.0, abs=0.3)
    result = osce("cpr", "analyze", str(folder), "--start", "1.0")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["video"]["compressions"] == got["compressions"]
    # The headline: the mean over compression time and the share in the guideline's band (was "…/мин (цель 100–120)").
    assert report["items"]["16"][0] == (f"Частота (видео): {rate}/мин в среднем, в диапазоне 100–120: 100 % компрессий "
                                        "(реже 0 %, чаще 0 %)")
    missing = osce("cpr", "analyze", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no manifest" in missing.stderr


# The rate changes (issue 19): 20 s at 90/min then 20 s at 118/min was reported as "118/мин": the headline kept only
# intervals within 10 % of the median. Now the mean over compression time, and the share of compressions whose own rate
# is within 100–120/min (what feedback devices report). Runs: (start, end, rate at start, rate at end).
RATE_CHANGES = {
    "90_then_118": ([(1.0, 21.0, 90, 90), (21.0, 41.0, 118, 118)], {}),
    "speeding_up": ([(1.0, 31.0, 95, 125)], {"noise": 4.0}),
    "slowing_down": ([(1.0, 31.0, 125, 95)], {"noise": 4.0, "jitter": 0.03}),
    "pauses_and_changes": ([(1.0, 13.0, 112, 112), (17.0, 28.0, 96, 104), (33.0, 41.0, 124, 124)], {"noise": 6.0}),
}


def rate_truth(cycles: list[float]) -> tuple[float, float]:
    """(mean rate over compression time, % of compressions with their own rate in 100–120) of the generated cycles."""
    gaps = np.diff(cycles)
    gaps = gaps[gaps < 2.0]  # within a cycle; the pauses here are 4 s and more
    rates = 60.0 / gaps
    return 60.0 * gaps.size / gaps.sum(), 100.0 * float(np.mean((rates >= 100) & (rates <= 120)))


@pytest.mark.parametrize("name", list(RATE_CHANGES))
def test_mean_rate_and_share_in_target_when_the_rate_changes(name):
    runs, extra = RATE_CHANGES[name]
    extra = dict(extra)
    cycles = SyntheticChest.schedule_rates(runs, jitter=extra.pop("jitter", 0.0), seed=5)
    chest = SyntheticChest(size=SIZE, duration=runs[-1][1] + 0.5, rate=100, cycles=cycles, seed=5, **extra)
    rate, share = rate_truth(cycles)
    got = analyse_frames(chest)
    assert got["estimate"] is True, got
    assert abs(got["compressions"] - len(cycles)) <= 1
    assert got["rate_per_min"] == pytest.approx(rate, abs=3), (got["rate_per_min"], rate)
    bands = got["rate_bands"]
    assert bands["in"] == pytest.approx(share, abs=5), (bands, share)
    assert bands["below"] + bands["in"] + bands["above"] == pytest.approx(100, abs=0.2)
    # The checklist line on the tablet and the review page says the same.
    line = figures_for_checklist(got, None)[16][0]
    found = re.fullmatch(r"Частота \(видео\): ([\d,]+)/мин в среднем, в диапазоне 100–120: ([\d,]+) % компрессий "
                         r"\(реже ([\d,]+) %, чаще ([\d,]+) %\)", line)
    assert found, line
    number = [float(x.replace(",", ".")) for x in found.groups()]
    assert number[0] == pytest.approx(rate, abs=3.5) and number[1] == pytest.approx(share, abs=5.5), line



def test_a_window_where_no_interval_agrees_with_its_neighbours_still_has_a_rate():
    # Two rates half and half (or missed detections in a row): every local median falls between them. The rate is the
    # mean over all of them then, never NaN (the live view's meta is JSON: NaN broke the observation grid).
    halves = np.array([0.5, 0.5, 1.0, 1.0])
    assert _rate(halves) == 80.0
    assert rate_bands(halves) == {"below": 50.0, "in": 50.0, "above": 0.0}
    assert _rate(np.zeros(0)) is None
