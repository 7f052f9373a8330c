"""Manikin feedback: import both documented formats, align to a recording, figures beside the checklist.

The sample files in cpr_samples/ describe one known session (made by the rule in `session()`): two runs
of 30 compressions at 110/min, a 4 s pause for two breaths, depths cycling through `DEPTHS`, every
5th compression without full recoil, every 20th with the hands too low, on a manikin clock that is
`DEVICE_AHEAD_S` ahead of the recording's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from media.cpr.figures import CHECKLIST_FIGURES, cpr_report, figures_for_checklist, manikin_figures
from media.cpr.manikin import Compression, Feedback, FeedbackError, align, align_auto, read_feedback
from media.cpr.motion import SyntheticChest, analyse_recording
from tests.media.conftest import osce

SAMPLES = Path(__file__).parent / "cpr_samples"
CHECKLIST = Path(__file__).parents[2] / "checklists" / "data" / "01_basic_cpr_adult.yaml"
DEVICE_AHEAD_S = 95.25
RATE = 110
DEPTHS = [52, 55, 58, 47, 54, 61, 56, 53, 50, 57]  # 80 % in 50–60 mm, 10 % shallower, 10 % deeper


def session() -> SyntheticChest:
    cycles = SyntheticChest.schedule(RATE, [(2.0, 18.4), (22.4, 38.8)])
    return SyntheticChest(size=(320, 240), duration=39.5, rate=RATE, cycles=cycles, noise=4.0, seed=11)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> tuple[Path, dict]:
    folder = session().record(tmp_path_factory.mktemp("cpr") / "rec")
    return folder, analyse_recording(folder, start=0.0)


def test_both_formats_read_the_same_session():
    osce_csv = read_feedback(SAMPLES / "session_110_osce.csv")
    trainer = read_feedback(SAMPLES / "session_110_trainer.csv")
    assert osce_csv.format == "osce-cpr-feedback/1" and trainer.format == "trainer-report"
    assert len(osce_csv.compressions) == len(trainer.compressions) == 60
    assert [v.volume_ml for v in trainer.ventilations] == [520, 650, 480, 560]
    for a, b in zip(osce_csv.compressions, trainer.compressions, strict=True):
        assert a.t == pytest.approx(b.t, abs=1e-6)
        assert a.depth_mm == pytest.approx(b.depth_mm)
        assert (a.recoil_ok, a.hand_ok) == (b.recoil_ok, b.hand_ok)
    assert trainer.compressions[0].rate_per_min == 110 and osce_csv.compressions[0].rate_per_min is None


def test_import_aligns_automatically_and_gives_the_figures(recording):
    folder, video = recording
    assert video["estimate"], video
    feedback = read_feedback(SAMPLES / "session_110_osce.csv")
    aligned, how = align(feedback, video)
    assert how["method"] == "auto" and how["offset_s"] == pytest.approx(-DEVICE_AHEAD_S, abs=0.2)
    assert how["confidence"] >= 0.8 and how["matched"] >= 55
    m = manikin_figures(aligned, start=0.0)
    assert m["compressions"] == 60 and m["cycles"] == [30, 30]
    assert m["depth_mm"]["bands"] == {"below": 10.0, "in": 80.0, "above": 10.0}
    assert m["rate_per_min"]["mean"] == pytest.approx(RATE, abs=1.5)
    assert m["recoil_percent"] == 80.0 and m["hand_position_percent"] == 95.0
    assert m["ventilations"]["count"] == 4 and m["ventilations"]["bands"]["in"] == 50.0
    assert m["time_to_first_compression_s"] == pytest.approx(2.0, abs=0.2)
    assert m["pauses"][0]["start"] == pytest.approx(18.36, abs=0.2)
    assert m["compression_fraction"] == pytest.approx(0.89, abs=0.01)
    items = figures_for_checklist(video, m)
    assert items[13] == ["Глубина (тренажёр): 5,4 см, в диапазоне 5–6 см 80 % (мельче 10 %, глубже 10 %)"]
    assert items[15] == ["Полное расправление (тренажёр): 80 % компрессий"]
    assert items[14] == ["Положение рук верное (тренажёр): 95 % компрессий"]
    # The video's headline: the mean over compression time and the share in the band (was "…/мин (цель 100–120)").
    assert items[16][0] == (f"Частота (видео): {RATE}/мин в среднем, в диапазоне 100–120: 100 % компрессий "
                            "(реже 0 %, чаще 0 %)")
    assert items[16][1].startswith(f"Частота (тренажёр): {RATE}/мин, в диапазоне 100–120: ")
    assert items[17] == ["Объём вдоха (тренажёр): 552 мл, в диапазоне 500–600 мл 50 %"]
    assert any(s.startswith("Доля компрессий (видео): 8") for s in items[12])
    report = cpr_report(video, m, how)
    assert json.loads(json.dumps(report, ensure_ascii=False))["items"]["13"] == items[13]


def test_given_offset_and_the_cli_import_of_the_trainer_report(recording):
    folder, video = recording
    trainer = read_feedback(SAMPLES / "session_110_trainer.csv")
    aligned, how = align(trainer, video, offset=-DEVICE_AHEAD_S)
    assert how == {"offset_s": -DEVICE_AHEAD_S, "method": "given", "confidence": 1.0}
    assert aligned.compressions[0].t == pytest.approx(2.0, abs=0.02)
    result = osce("cpr", "import", str(SAMPLES / "session_110_trainer.csv"), "--recording", str(folder))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["alignment"]["method"] == "auto"
    assert report["alignment"]["offset_s"] == pytest.approx(-DEVICE_AHEAD_S, abs=0.2)
    assert report["manikin"]["depth_mm"]["mean"] == pytest.approx(np.mean(DEPTHS), abs=0.05)
    assert report["manikin"]["rate_per_min"]["bands"]["in"] == 100.0  # the trainer's own rate column
    assert report["items"]["13"][0].startswith("Глубина (тренажёр): 5,4 см")


def test_auto_alignment_survives_missed_and_extra_compressions():
    rng = np.random.default_rng(1)
    rec = np.concatenate([10 + np.arange(30) * 0.52, 30 + np.arange(30) * 0.5, 52 + np.arange(30) * 0.55])
    device = rec - 400.0 + rng.normal(0, 0.03, rec.size)
    video = np.sort(np.concatenate([np.delete(rec, [3, 40, 41, 70]), [5.0, 27.3]]))
    result = align_auto(list(device), list(video))
    assert result["offset_s"] == pytest.approx(400.0, abs=0.05)
    assert result["matched"] >= 84 and result["margin_votes"] >= 2
    shifted = align_auto(list(device), list(video + 0.26))  # half a period later
    assert shifted["offset_s"] == pytest.approx(400.26, abs=0.05)
    assert align_auto([1.0, 2.0], list(video))["offset_s"] is None


def test_bad_files_are_named_with_their_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("# osce-cpr-feedback/1\ntime_s,event,depth_mm,rate_per_min,recoil,hand_position,volume_ml\n"
                   "1.0,compression,5x,,1,ok,\n", encoding="utf-8")
    with pytest.raises(FeedbackError, match=r"bad.csv:3: '5x' is not a number"):
        read_feedback(bad)
    bad.write_text("time;depth\n1;2\n", encoding="utf-8")
    with pytest.raises(FeedbackError, match="neither"):
        read_feedback(bad)


def test_checklist_mapping_points_at_the_items_it_means():
    items = {i["number"]: i["action"] for i in yaml.safe_load(CHECKLIST.read_text(encoding="utf-8"))["items"]}
    mapping = CHECKLIST_FIGURES["01_basic_cpr_adult"]
    words = {"depth": "Глубина", "rate": "Частота", "recoil": "расправление", "hands": "положение рук",
             "volume": "Объём вдоха", "compressions": "30 компрессий", "ventilations": "два вдоха",
             "fraction": "циклами", "long_pauses": "небезопасные"}
    for item, keys in mapping.items():
        for key in keys:
            if key in words:
                assert words[key].lower() in items[item].lower(), (item, key, items[item])


def test_manikin_rate_and_depth_shares_when_the_rate_changes():
    """20 s at 90/min then 20 s at 118/min with a pause between, on a manikin without its own rate column: the mean over
    compression time, the share of compressions within 100–120/min and within 5–6 cm, as feedback devices report."""
    times = SyntheticChest.schedule_rates([(0.0, 20.0, 90, 90), (24.0, 44.0, 118, 118)], jitter=0.02, seed=3)
    depths = np.array([52, 47, 58, 63])[np.arange(len(times)) % 4]  # half within 50–60 mm
    feedback = Feedback("osce-cpr-feedback/1", "test", [Compression(t, float(d), True, True)
                                                      for t, d in zip(times, depths, strict=True)])
    gaps = np.diff(times)
    gaps = gaps[gaps < 2.0]
    rates = 60.0 / gaps
    m = manikin_figures(feedback, start=0.0)
    assert m["rate_per_min"]["mean"] == pytest.approx(60.0 * gaps.size / gaps.sum(), abs=3)
    assert m["rate_per_min"]["bands"]["in"] == pytest.approx(100 * np.mean((rates >= 100) & (rates <= 120)), abs=5)
    assert 35 < m["rate_per_min"]["bands"]["below"] < 50  # the 90/min half is not thrown away
    share = {"below": np.mean(depths < 50), "in": np.mean((depths >= 50) & (depths <= 60)),
             "above": np.mean(depths > 60)}
    assert m["depth_mm"]["bands"] == {k: round(100 * float(v), 1) for k, v in share.items()}
    items = figures_for_checklist(None, m)
    d = m["depth_mm"]["bands"]
    assert items[13] == [f"Глубина (тренажёр): 5,5 см, в диапазоне 5–6 см {d['in']:.0f} % (мельче {d['below']:.0f} %, "
                         f"глубже {d['above']:.0f} %)"]
    b = m["rate_per_min"]["bands"]
    assert items[16] == [f"Частота (тренажёр): {m['rate_per_min']['mean']:.0f}/мин, в диапазоне 100–120: "
                         f"{b['in']:.0f} % (реже {b['below']:.0f} %, чаще {b['above']:.0f} %)".replace(".", ",")]
