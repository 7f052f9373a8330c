"""Guideline bands, manikin figures, and short Russian strings per checklist item.

The figures inform the examiner; they never mark an item. Which figures go beside which item is
data (`CHECKLIST_FIGURES`, keyed by checklist file stem, then item number), checked against the
checklist's wording by the tests so a renumbered checklist fails loudly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from media.cpr.manikin import Feedback

# Adult BLS targets (ERC/AHA, see /work/shared/domain.md).
GUIDELINES: dict[str, Any] = {
    "depth_mm": (50.0, 60.0),
    "rate_per_min": (100.0, 120.0),
    "recoil_percent_min": 90.0,  # "full recoil": share of compressions
    "hand_position_percent_min": 90.0,
    "compression_fraction_min": 0.80,
    "volume_ml": (500.0, 600.0),
    "depth_in_band_percent_min": 90.0,  # checklist item 13's done-criterion
    "min_pause_s": 1.0,
}

# checklist stem -> item number -> figure keys shown beside it (rendered by `_LINES`).
CHECKLIST_FIGURES: dict[str, dict[int, tuple[str, ...]]] = {
    "01_basic_cpr_adult": {
        10: ("compressions", "first"),
        11: ("ventilations",),
        12: ("fraction", "pauses"),
        13: ("depth",),
        14: ("hands",),
        15: ("recoil",),
        16: ("rate",),
        17: ("volume",),
        19: ("long_pauses",),
    },
}

REASONS_RU = {
    "no_motion": "нет движения в кадре",
    "camera_moving": "камера двигалась",
    "not_periodic": "движение не похоже на компрессии",
    "too_few_compressions": "слишком мало компрессий",
    "too_short": "слишком короткая запись",
    "no_recording": "нет записи этой камеры",
}
LONG_PAUSE_S = 10.0


def _n(x: float, digits: int = 0) -> str:
    return f"{x:.{digits}f}".replace(".", ",")


def bands(values: np.ndarray, lo: float, hi: float) -> dict[str, float]:
    if values.size == 0:
        return {"below": 0.0, "in": 0.0, "above": 0.0}
    return {"below": round(100 * float(np.mean(values < lo)), 1),
            "in": round(100 * float(np.mean((values >= lo) & (values <= hi))), 1),
            "above": round(100 * float(np.mean(values > hi)), 1)}


def runs_and_pauses(times: np.ndarray, min_pause: float = GUIDELINES["min_pause_s"]) -> dict[str, Any]:
    """Cycles (runs of compressions), hands-off pauses and the compression fraction from compression times.

    The same rule as the video analysis: a gap longer than the typical interval by `min_pause` is a pause,
    starting one typical interval after the last compression of a run.
    """
    gaps = np.diff(times)
    period = float(np.median(gaps)) if gaps.size else 0.0
    breaks = np.flatnonzero(gaps >= period + min_pause)
    runs = [r.size for r in np.split(times, breaks + 1)] if times.size else []
    pauses = [{"start": round(float(times[i] + period), 2), "length": round(float(gaps[i] - period), 2)}
              for i in breaks]
    span = float(times[-1] + period - times[0]) if times.size else 0.0
    off = sum(p["length"] for p in pauses)
    in_run = gaps[gaps < period + min_pause]
    return {"period_s": round(period, 3), "cycles": runs, "pauses": pauses, "hands_off_s": round(off, 2),
            "compression_fraction": round((span - off) / span, 3) if span > 0 else None,
            "rate_per_min": round(60.0 * in_run.size / in_run.sum(), 1) if in_run.size else None}


def manikin_figures(feedback: Feedback, start: float | None = 0.0) -> dict[str, Any]:
    """Depth, rate, recoil, hand position, ventilation and fraction figures with guideline bands.

    `start` is the task start on the same clock as the feedback; None when the clocks are not aligned.
    """
    times = np.array([c.t for c in feedback.compressions])
    timeline = runs_and_pauses(times)
    depth = np.array([c.depth_mm for c in feedback.compressions if c.depth_mm is not None])
    device_rate = [c.rate_per_min for c in feedback.compressions]
    if all(r is not None for r in device_rate):
        rate = np.array(device_rate, float)
    else:  # from the interval to the previous compression of the same cycle
        gaps = np.diff(times)
        rate = 60.0 / gaps[gaps < timeline["period_s"] + GUIDELINES["min_pause_s"]]
    recoil = [c.recoil_ok for c in feedback.compressions if c.recoil_ok is not None]
    hands = [c.hand_ok for c in feedback.compressions if c.hand_ok is not None]
    volume = np.array([v.volume_ml for v in feedback.ventilations if v.volume_ml is not None])
    bins = []
    for t0 in np.arange(np.floor(times[0] / 10) * 10, times[-1] + 1e-9, 10.0):
        sel = [c for c in feedback.compressions if t0 <= c.t < t0 + 10 and c.depth_mm is not None]
        bins.append({"t": round(float(t0), 1), "compressions": len(sel),
                     "depth_mm": round(float(np.mean([c.depth_mm for c in sel])), 1) if sel else None})
    return {
        "source": feedback.format, "device": feedback.device,
        "compressions": int(times.size),
        "first_compression_s": round(float(times[0]), 2),
        "time_to_first_compression_s": None if start is None else round(float(times[0] - start), 2),
        "depth_mm": {"mean": round(float(depth.mean()), 1) if depth.size else None,
                     "bands": bands(depth, *GUIDELINES["depth_mm"])},
        "rate_per_min": {"mean": timeline["rate_per_min"], "bands": bands(rate, *GUIDELINES["rate_per_min"])},
        "recoil_percent": round(100 * float(np.mean(recoil)), 1) if recoil else None,
        "hand_position_percent": round(100 * float(np.mean(hands)), 1) if hands else None,
        "ventilations": {"count": len(feedback.ventilations),
                         "mean_ml": round(float(volume.mean()), 0) if volume.size else None,
                         "bands": bands(volume, *GUIDELINES["volume_ml"])},
        "cycles": timeline["cycles"], "pauses": timeline["pauses"], "hands_off_s": timeline["hands_off_s"],
        "compression_fraction": timeline["compression_fraction"],
        "timeline_10s": bins,
    }


# -- strings beside the checklist --------------------------------------------------------------


def _video_lines(key: str, v: dict[str, Any]) -> list[str]:
    lo, hi = GUIDELINES["rate_per_min"]
    if key == "rate":
        line = f"Частота (видео): {_n(v['rate_per_min'])}/мин в среднем"
        b = v.get("rate_bands")  # reports made before it was added have none
        if b is None:
            return [f"{line} (цель {_n(lo)}–{_n(hi)})"]
        return [f"{line}, в диапазоне {_n(lo)}–{_n(hi)}: {_n(b['in'])} % компрессий "
                f"(реже {_n(b['below'])} %, чаще {_n(b['above'])} %)"]
    if key == "compressions":
        cycles = runs_and_pauses(np.asarray(v["compression_times"]))["cycles"]
        bound = "" if v.get("coverage", 1.0) >= 0.98 else "не менее "
        return [f"Компрессий (видео): {bound}{v['compressions']}, в цикле {_n(float(np.median(cycles)))} (медиана)"]
    if key == "first" and v.get("time_to_first_compression_s") is not None:
        return [f"Первая компрессия (видео): через {_n(v['time_to_first_compression_s'])} с от начала"]
    if key == "fraction" and v.get("compression_fraction") is not None:
        target = _n(100 * GUIDELINES["compression_fraction_min"])
        return [f"Доля компрессий (видео): {_n(100 * v['compression_fraction'])} % (цель > {target} %)"]
    if key == "pauses":
        longest = max((p["length"] for p in v["pauses"]), default=0.0)
        return [f"Паузы (видео): {len(v['pauses'])}, самая длинная {_n(longest, 1)} с, "
                f"всего без компрессий {_n(v['hands_off_s'])} с"]
    if key == "long_pauses":
        long = [p for p in v["pauses"] if p["length"] > LONG_PAUSE_S]
        if long:
            return [f"Паузы длиннее {_n(LONG_PAUSE_S)} с (видео): " + ", ".join(
                f"{_n(p['length'])} с на {_n(p['start'])} с" for p in long)]
    return []


def _manikin_lines(key: str, m: dict[str, Any]) -> list[str]:
    d, r, vent = m["depth_mm"], m["rate_per_min"], m["ventilations"]
    (dlo, dhi), (rlo, rhi), (vlo, vhi) = GUIDELINES["depth_mm"], GUIDELINES["rate_per_min"], GUIDELINES["volume_ml"]
    if key == "depth" and d["mean"] is not None:
        b = d["bands"]
        return [f"Глубина (тренажёр): {_n(d['mean'] / 10, 1)} см, в диапазоне {_n(dlo / 10)}–{_n(dhi / 10)} см "
                f"{_n(b['in'])} % (мельче {_n(b['below'])} %, глубже {_n(b['above'])} %)"]
    if key == "rate" and r["mean"] is not None:
        b = r["bands"]
        return [f"Частота (тренажёр): {_n(r['mean'])}/мин, в диапазоне {_n(rlo)}–{_n(rhi)}: {_n(b['in'])} % "
                f"(реже {_n(b['below'])} %, чаще {_n(b['above'])} %)"]
    if key == "recoil" and m["recoil_percent"] is not None:
        return [f"Полное расправление (тренажёр): {_n(m['recoil_percent'])} % компрессий"]
    if key == "hands" and m["hand_position_percent"] is not None:
        return [f"Положение рук верное (тренажёр): {_n(m['hand_position_percent'])} % компрессий"]
    if key in ("volume", "ventilations") and vent["count"]:
        if key == "ventilations":
            return [f"Вдохов (тренажёр): {vent['count']}"]
        if vent["mean_ml"] is not None:
            return [f"Объём вдоха (тренажёр): {_n(vent['mean_ml'])} мл, в диапазоне {_n(vlo)}–{_n(vhi)} мл "
                    f"{_n(vent['bands']['in'])} %"]
    if key == "fraction" and m["compression_fraction"] is not None:
        return [f"Доля компрессий (тренажёр): {_n(100 * m['compression_fraction'])} %"]
    return []


def figures_for_checklist(video: dict[str, Any] | None, manikin: dict[str, Any] | None,
                          checklist: str = "01_basic_cpr_adult") -> dict[int, list[str]]:
    """Short strings to show beside the marks, per item number (items with nothing to show are left out)."""
    out: dict[int, list[str]] = {}
    video_keys = {"rate", "compressions", "first", "fraction", "pauses"}
    for item, keys in CHECKLIST_FIGURES.get(checklist, {}).items():
        lines: list[str] = []
        if video is not None and not video.get("estimate") and video_keys & set(keys):
            reason = REASONS_RU.get(video.get("reason", ""), video.get("reason", ""))
            lines.append(f"{_LABELS[keys[0]]} (видео): нет оценки — {reason}")
        for key in keys:
            if video is not None and video.get("estimate"):
                lines += _video_lines(key, video)
            if manikin is not None:
                lines += _manikin_lines(key, manikin)
        if lines:
            out[item] = lines
    return out


_LABELS = {"rate": "Частота", "compressions": "Компрессии", "fraction": "Доля компрессий"}


def cpr_report(video: dict[str, Any] | None, manikin: dict[str, Any] | None, alignment: dict[str, Any] | None,
               checklist: str = "01_basic_cpr_adult") -> dict[str, Any]:
    """The JSON that goes into the export package beside the marks."""
    items = figures_for_checklist(video, manikin, checklist)
    return {"format": "osce-cpr-figures/1", "checklist": checklist,
            "guidelines": {k: list(v) if isinstance(v, tuple) else v for k, v in GUIDELINES.items()},
            "video": video, "manikin": manikin, "alignment": alignment,
            "items": {str(k): v for k, v in sorted(items.items())}}


REPORT_FORMAT = "osce-cpr-figures/1"
MAX_REPORT_BYTES = 2 * 1024 * 1024


def check_report(data: Any) -> dict[int, list[str]]:
    """Validate an `osce-cpr-figures/1` report (already parsed JSON); its items as {item number: [strings]}.

    Raises ValueError naming the field. Only the shape is checked: the figures are informative.
    """
    if not isinstance(data, dict):
        raise ValueError("report: must be a JSON object")
    if data.get("format") != REPORT_FORMAT:
        raise ValueError(f"format: must be {REPORT_FORMAT!r}")
    if not isinstance(data.get("checklist"), str) or not data["checklist"]:
        raise ValueError("checklist: must be a checklist file stem")
    for key in ("video", "manikin", "alignment"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise ValueError(f"{key}: must be an object or null")
    items = data.get("items")
    if not isinstance(items, dict):
        raise ValueError("items: must be an object")
    out: dict[int, list[str]] = {}
    for key, lines in items.items():
        if not (isinstance(key, str) and key.isdigit() and 0 < int(key) < 1000):
            raise ValueError(f"items: {key!r} is not an item number")
        if not isinstance(lines, list) or not all(isinstance(s, str) and len(s) <= 500 for s in lines):
            raise ValueError(f"items.{key}: must be a list of short strings")
        out[int(key)] = list(lines)
    return out
