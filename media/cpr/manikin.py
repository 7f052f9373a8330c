"""CPR feedback from a training manikin: import (two CSV formats, `FORMATS.md`) and alignment to a recording.

A manikin stamps its events on its own clock (seconds since its session started). Alignment finds
``offset`` such that ``recording time = device time + offset``: given by the operator, or found by
matching the manikin's compression times against the compressions detected in the video
(`align_auto`): every pairwise difference video − manikin votes for an offset, the best 40 ms bin
wins and is refined to the median of its matched pairs. Pauses make the pattern unique; the
result says how many compressions matched and by how many votes the runner-up lost.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

OSCE_HEADER = "# osce-cpr-feedback/1"
TRAINER_COLUMNS = ("Время", "Событие", "Глубина, см", "Частота, /мин", "Декомпрессия", "Положение рук",
                   "Объём, мл")
MATCH_S = 0.15  # a manikin and a video compression closer than this are the same compression
BIN_S = 0.04
MAX_FILE_BYTES = 16 * 1024 * 1024  # a 20-minute session at 2 compressions a second is about 100 KB
# A decimal as the manikins write it (12.5 or 12,5). ASCII digits only: float() would also take "nan", "1e308",
# "1_0", "+5" and other scripts' digits ("١٢"), and such a value would change the figures without a word.
_DECIMAL = re.compile(r"[0-9]{1,9}([.,][0-9]{1,9})?")


class FeedbackError(ValueError):
    """A feedback file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Compression:
    t: float  # device clock (s); recording clock after `shifted`
    depth_mm: float | None
    recoil_ok: bool | None
    hand_ok: bool | None
    rate_per_min: float | None = None


@dataclass(frozen=True)
class Ventilation:
    t: float
    volume_ml: float | None


@dataclass
class Feedback:
    format: str
    device: str = ""
    compressions: list[Compression] = field(default_factory=list)
    ventilations: list[Ventilation] = field(default_factory=list)

    def shifted(self, offset: float) -> Feedback:
        """The same events on the recording clock (device time + offset)."""
        return Feedback(self.format, self.device, [replace(c, t=c.t + offset) for c in self.compressions],
                        [replace(v, t=v.t + offset) for v in self.ventilations])


# -- reading -----------------------------------------------------------------------------------


def _number(text: str, where: str, scale: float = 1.0) -> float | None:
    text = text.strip()
    if not text:
        return None
    if not _DECIMAL.fullmatch(text):
        raise FeedbackError(f"{where}: {text!r} is not a number like 52 or 52.5")
    return float(text.replace(",", ".")) * scale


def _flag(text: str, where: str, yes: tuple[str, ...], no: tuple[str, ...]) -> bool | None:
    value = text.strip().lower()
    if not value:
        return None
    if value in yes:
        return True
    if value in no:
        return False
    raise FeedbackError(f"{where}: {text!r} is not one of {yes + no}")


def _clock(text: str, where: str) -> float:
    """Seconds from ``12.5``, ``12,5``, ``MM:SS.fff`` or ``HH:MM:SS,fff``."""
    parts = text.strip().split(":")
    if len(parts) > 3 or not all(_DECIMAL.fullmatch(p) for p in parts):
        raise FeedbackError(f"{where}: time {text!r} is not seconds or [HH:]MM:SS.fff")
    values = [float(p.replace(",", ".")) for p in parts]
    return sum(v * 60 ** i for i, v in enumerate(reversed(values)))


def _read_osce(lines: list[str], name: str) -> Feedback:
    meta = {}
    body = []
    for number, line in enumerate(lines, start=1):
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            meta[key.strip()] = value.strip()
        elif line.strip():
            body.append((number, line))
    feedback = Feedback("osce-cpr-feedback/1", meta.get("device", ""))
    rows = [next(csv.reader([line]), []) for _, line in body]  # one event per line: a quote never joins two
    if not rows or rows[0] != ["time_s", "event", "depth_mm", "rate_per_min", "recoil", "hand_position",
                               "volume_ml"]:
        raise FeedbackError(f"{name}: the first line after the comments must be the column names (FORMATS.md)")
    for (number, _), row in zip(body[1:], rows[1:], strict=True):
        where = f"{name}:{number}"
        if len(row) != 7:
            raise FeedbackError(f"{where}: {len(row)} fields, expected 7")
        t = _clock(row[0], where)
        if row[1] == "compression":
            feedback.compressions.append(Compression(
                t, _number(row[2], where), _flag(row[4], where, ("1", "full"), ("0", "incomplete")),
                _flag(row[5], where, ("ok", "1"), ("wrong", "0", "low", "high", "left", "right")),
                _number(row[3], where)))
        elif row[1] == "ventilation":
            feedback.ventilations.append(Ventilation(t, _number(row[6], where)))
        else:
            raise FeedbackError(f"{where}: event {row[1]!r} is not compression or ventilation")
    return feedback


def _read_trainer(lines: list[str], name: str) -> Feedback:
    """The trainer-report style: a `Ключ: значение` block, a blank line, a `;` table in Russian."""
    meta: dict[str, str] = {}
    start = None
    for number, line in enumerate(lines):
        if line.startswith(TRAINER_COLUMNS[0] + ";"):
            start = number
            break
        key, sep, value = line.partition(":")
        if sep:
            meta[key.strip()] = value.strip()
    if start is None:
        raise FeedbackError(f"{name}: no table header starting {TRAINER_COLUMNS[0]!r}")
    header = [c.strip() for c in lines[start].split(";")]
    if tuple(header) != TRAINER_COLUMNS:
        raise FeedbackError(f"{name}:{start + 1}: columns {header}, expected {list(TRAINER_COLUMNS)}")
    feedback = Feedback("trainer-report", meta.get("Тренажёр", ""))
    for number, line in enumerate(lines[start + 1:], start=start + 2):
        if not line.strip():
            continue
        row = [c.strip() for c in line.split(";")]
        where = f"{name}:{number}"
        if len(row) != len(TRAINER_COLUMNS):
            raise FeedbackError(f"{where}: {len(row)} fields, expected {len(TRAINER_COLUMNS)}")
        t = _clock(row[0], where)
        kind = row[1].lower()
        if kind == "компрессия":
            feedback.compressions.append(Compression(
                t, _number(row[2], where, 10.0), _flag(row[4], where, ("полная", "да"), ("неполная", "нет")),
                _flag(row[5], where, ("верно", "правильно"), ("неверно", "низко", "высоко", "слева", "справа")),
                _number(row[3], where)))
        elif kind == "вдох":
            feedback.ventilations.append(Ventilation(t, _number(row[6], where)))
        else:
            raise FeedbackError(f"{where}: event {row[1]!r} is not Компрессия or Вдох")
    return feedback


def read_feedback(path: Path) -> Feedback:
    """A manikin export in either documented format (detected from its first line)."""
    with Path(path).open("rb") as fh:  # read at most the limit: the file may be anything a device left there
        raw = fh.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise FeedbackError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, not a manikin export")
    try:
        text = raw.decode("utf-8-sig") if not raw.startswith(b"\xff\xfe") else raw.decode("utf-16")
    except UnicodeDecodeError as exc:
        raise FeedbackError(f"{path}: not UTF-8 or UTF-16 text (byte {exc.start})") from None
    lines = io.StringIO(text).read().splitlines()
    if lines and lines[0].strip() == OSCE_HEADER:
        feedback = _read_osce(lines, str(path))
    elif any(re.match(r"^Время;", line) for line in lines[:40]):
        feedback = _read_trainer(lines, str(path))
    else:
        raise FeedbackError(f"{path}: neither {OSCE_HEADER!r} nor a trainer report (FORMATS.md)")
    if not feedback.compressions:
        raise FeedbackError(f"{path}: no compressions")
    feedback.compressions.sort(key=lambda c: c.t)
    feedback.ventilations.sort(key=lambda v: v.t)
    return feedback


# -- alignment ---------------------------------------------------------------------------------


def align_auto(device_times: list[float], video_times: list[float], max_offset: float = 3600.0) -> dict[str, Any]:
    """The offset (recording = device + offset) that best lays manikin compressions on video ones."""
    m = np.asarray(device_times, float)
    v = np.asarray(video_times, float)
    if m.size < 5 or v.size < 5:
        return {"offset_s": None, "method": "auto", "confidence": 0.0, "reason": "too_few_compressions"}
    diffs = (v[None, :] - m[:, None]).ravel()
    diffs = diffs[np.abs(diffs) <= max_offset]
    bins = np.floor(diffs / BIN_S).astype(np.int64)
    keys, counts = np.unique(bins, return_counts=True)
    # A compression matches within ±MATCH_S: count votes over the bins of that width around each bin.
    width = int(round(MATCH_S / BIN_S))
    dense = np.zeros(keys.max() - keys.min() + 1 + 2 * width)
    dense[keys - keys.min() + width] = counts
    votes = np.convolve(dense, np.ones(2 * width + 1), mode="same")
    best = int(np.argmax(votes))
    rough = (best - width + keys.min() + 0.5) * BIN_S
    runner_up = votes.copy()
    runner_up[max(0, best - 2 * width): best + 2 * width + 1] = 0
    close = diffs[np.abs(diffs - rough) <= MATCH_S]
    offset = float(np.median(close))
    matched = int(np.sum(np.min(np.abs(m[:, None] + offset - v[None, :]), axis=1) <= MATCH_S))
    share = matched / min(m.size, v.size)
    margin = int(votes[best] - runner_up.max())
    confidence = share * (1.0 if margin >= 2 else 0.5)
    return {"offset_s": round(offset, 3), "method": "auto", "confidence": round(confidence, 2),
            "matched": matched, "matched_share": round(share, 3), "margin_votes": margin}


def align(feedback: Feedback, video: dict[str, Any] | None, offset: float | None = None) -> tuple[Feedback, dict]:
    """Feedback on the recording clock, and how it was aligned (given offset, or auto from the video)."""
    if offset is not None:
        return feedback.shifted(offset), {"offset_s": offset, "method": "given", "confidence": 1.0}
    if not video or not video.get("estimate"):
        return feedback.shifted(0.0), {"offset_s": None, "method": "none", "confidence": 0.0,
                                       "reason": "no video compressions to align with: give --offset"}
    result = align_auto([c.t for c in feedback.compressions], video["compression_times"])
    return feedback.shifted(result["offset_s"] or 0.0), result
