"""CPR video figures of an attempt recorded in several parts (the agent restarted, the disk filled up...).

Each part is analysed alone (`media.cpr.motion.analyse_recording`, on its own recording clock), then the
results are put on one clock: seconds from the first part's media origin (wall-clock differences between the
parts' origins, so a gap keeps its real length). The time between parts, and any time of the performing
phase no part covers, is *no data*: listed in `no_data_intervals`, left out of the compression span like
an unknown interval (so it is neither a pause nor compression time; `coverage` and hence the "не менее"
bound and the compression fraction's 80 % rule account for it). Hands-off time seen at a part's edge,
right before or after a gap, is a pause when it is long enough by the same rule as between compressions.
A part without an estimate (too short, camera moving) counts as unknown over its whole length.

Added to `video` for every attempt: `parts` (name, media_from, from_s, to_s, estimate), `attempt_s` (the
performing phase), `covered_s` (of it, with media), `no_data_s` and `no_data_intervals`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .lifecycle import part_dirs, part_media_span

NO_DATA_MIN_S = 0.2  # shorter holes between parts are the fragment rounding, not missing media


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


def attempt_parts(folder: Path, performing: datetime, ended: datetime) -> list[tuple[Path, datetime, datetime]]:
    """The recording parts with media in the performing phase, in time order, with their media span (wall)."""
    out = []
    for part in part_dirs(folder):
        origin, end, _ = part_media_span(part)
        if origin is not None and end is not None and end > performing and origin < ended:
            out.append((part, origin, end))
    return sorted(out, key=lambda p: p[1])


def _overlap(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    return sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in intervals)


def _shift(items: list[dict[str, Any]], by: float, key: str = "start") -> list[dict[str, Any]]:
    return [{**item, key: round(item[key] + by, 2)} for item in items]


def analyse_parts(parts: list[tuple[Path, datetime, datetime]], performing: datetime, ended: datetime, track: str,
                  roi: tuple[float, float, float, float] | None,
                  analyse: Callable[[Path, str, float, Any, Any], dict[str, Any]],
                  progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """The attempt's video figures from its parts (see the module doc); `analyse` is `analyse_recording`."""
    origin0 = parts[0][1]
    perf_s, end_s = (performing - origin0).total_seconds(), (ended - origin0).total_seconds()
    results: list[tuple[Path, float, dict[str, Any]]] = []
    spans: list[tuple[float, float]] = []
    done_s = 0.0
    for part, origin, end in parts:
        shift = (origin - origin0).total_seconds()
        start = max(perf_s - shift, 0.0) if results else perf_s  # the first part keeps its task start
        step = None if progress is None else (lambda t, base=done_s: progress(base + t))
        results.append((part, shift, analyse(part, track, round(start, 3), roi, step)))
        spans.append((max(shift, perf_s), min(shift + (end - origin).total_seconds(), end_s)))
        done_s += (end - origin).total_seconds()
    no_data: list[tuple[float, float]] = []
    edge = perf_s
    for a, b in spans:
        if a - edge >= NO_DATA_MIN_S:
            no_data.append((edge, a))
        edge = max(edge, b)
    if end_s - edge >= NO_DATA_MIN_S:
        no_data.append((edge, end_s))
    covered = sum(max(0.0, b - a) for a, b in spans)
    info = {"parts": [{"part": p.name, "media_from": _iso(o), "from_s": round(a, 2), "to_s": round(b, 2),
                       "estimate": bool(r.get("estimate")),
                       **({} if r.get("estimate") else {"reason": r.get("reason")})}
                      for (p, o, _), (a, b), (_, _, r) in zip(parts, spans, results, strict=True)],
            "attempt_s": round(end_s - perf_s, 2), "covered_s": round(covered, 2),
            "no_data_s": round(sum(b - a for a, b in no_data), 2),
            "no_data_intervals": [{"start": round(a, 2), "length": round(b - a, 2)} for a, b in no_data]}
    if len(results) == 1:
        return {**results[0][2], **info}
    return {**_merge(results, spans, no_data, perf_s), **info}


def _merge(results: list[tuple[Path, float, dict[str, Any]]], spans: list[tuple[float, float]],
           no_data: list[tuple[float, float]], perf_s: float) -> dict[str, Any]:
    from media.cpr.motion import MIN_COVERAGE, MIN_PAUSE_S, _rate

    track = results[0][2].get("track")
    frames = sum(int(r.get("frames", 0)) for _, _, r in results)
    est = [(i, shift, r) for i, (_, shift, r) in enumerate(results) if r.get("estimate")]
    if not est:
        only = results[0][2]
        return {"estimate": None, "reason": only.get("reason"), "confidence": only.get("confidence", 0.0),
                "track": track, "start_s": perf_s, "frames": frames}
    comp = np.concatenate([np.asarray(r["compression_times"]) + s for _, s, r in est])
    first, end = float(comp[0]), est[-1][2]["last_compression_end_s"] + est[-1][1]
    pauses: list[dict[str, Any]] = []
    unknown: list[dict[str, Any]] = []
    intervals: list[np.ndarray] = []
    for n, (i, shift, r) in enumerate(est):
        times = np.asarray(r["compression_times"])
        gaps = np.diff(times)
        period = float(np.median(gaps))
        intervals.append(gaps[gaps < period + MIN_PAUSE_S])
        a, b = spans[i]
        lead = float(times[0]) + shift - a  # hands off seen right after a gap
        if n > 0 and lead >= MIN_PAUSE_S:
            pauses.append({"start": round(a, 2), "length": round(lead, 2), "at_part_edge": True})
        pauses += _shift(r["pauses"], shift)
        tail = b - (r["last_compression_end_s"] + shift)  # hands off seen right before a gap
        if n < len(est) - 1 and tail >= MIN_PAUSE_S:
            pauses.append({"start": round(b - tail, 2), "length": round(tail, 2), "at_part_edge": True})
        unknown += _shift(r["unknown_intervals"], shift)
    for (_, _, r), (a, b) in zip(results, spans, strict=True):
        if not r.get("estimate") and min(b, end) > max(a, first):  # nothing could be told in this part
            unknown.append({"start": round(max(a, first), 2), "length": round(min(b, end) - max(a, first), 2),
                            "reason": r.get("reason")})
    span = end - first
    lost = _overlap(no_data, first, end) + _overlap([(u["start"], u["start"] + u["length"]) for u in unknown],
                                                    first, end)
    known = span - lost
    coverage = known / span if span > 0 else 0.0
    hands_off = sum(p["length"] for p in pauses)
    weights = np.array([r["compressions"] for _, _, r in est], float)
    raw = np.array([r["confidence"] / max(min(1.0, r.get("coverage", 1.0)), 1e-3) for _, _, r in est])
    best = max(est, key=lambda e: e[2]["compressions"])[2]
    first_part = est[0][0] == 0 and not _overlap(no_data, perf_s, first)
    return {
        "estimate": True,
        "confidence": round(float(np.average(raw, weights=weights) * min(1.0, coverage)), 2),
        "coverage": round(float(coverage), 3),
        "compressions": int(comp.size),
        "rate_per_min": _rate(np.concatenate(intervals)),
        "rate_series": [{**x, "t": round(x["t"] + s, 2)} for _, s, r in est for x in r["rate_series"]],
        "pauses": sorted(pauses, key=lambda p: p["start"]),
        "hands_off_s": round(float(hands_off), 2),
        "unknown_intervals": sorted(unknown, key=lambda u: u["start"]),
        "first_compression_s": round(first, 2),
        "last_compression_end_s": round(float(end), 2),
        "time_to_first_compression_s": est[0][2]["time_to_first_compression_s"] if first_part else None,
        "compression_fraction": round(float((known - hands_off) / known), 3)
        if coverage >= MIN_COVERAGE and known > 0 else None,
        "compression_times": [round(float(x), 3) for x in comp],
        "roi": best["roi"],
        "track": track, "start_s": round(perf_s, 3), "frames": frames,
    }


def no_data_line(video: dict[str, Any]) -> str | None:
    """The line shown beside the video figures when media is missing for part of the task, or None."""
    if not video.get("no_data_s") or video["no_data_s"] < 0.5:
        return None

    def n(x: float) -> str:
        return f"{x:.1f}".replace(".", ",")

    count = len(video.get("parts", []))
    return (f"Нет записи {n(video['no_data_s'])} с из {n(video['attempt_s'])} с (запись из {count} "
            f"{'части' if count == 1 else 'частей'}): цифры видео — по {n(video['covered_s'])} с записи")
