"""Scores derived from marks, and agreement between examiners.

Accreditation rule: score = items marked done / all items, as a percentage; "сдано" at or above the
checklist's threshold (70 % by default), per task. An item flagged critical and left undone fails the task
whatever the percentage (only where the definition flags it). Unmarked items count as not done. The
comparison is exact (no rounding): 69.99 % fails a 70 % threshold.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from .model import Checklist


@dataclass(frozen=True)
class Score:
    percent: float
    passed: bool
    done: int
    total: int
    critical_missed: list[int]
    checklist_hash: str
    threshold_percent: float

    def to_json(self) -> dict[str, object]:
        return {
            "percent": self.percent,
            "passed": self.passed,
            "done": self.done,
            "total": self.total,
            "critical_missed": list(self.critical_missed),
            "checklist_hash": self.checklist_hash,
            "threshold_percent": self.threshold_percent,
        }


def score(checklist: Checklist, marks: Mapping[int, bool]) -> Score:
    """Score one examiner's marks; a mark for an item the checklist does not have is a ValueError."""
    numbers = checklist.item_numbers
    unknown = sorted(set(marks) - set(numbers))
    if unknown:
        raise ValueError(f"item: not in checklist {checklist.title!r}: {unknown}")
    done = sum(1 for n in numbers if marks.get(n) is True)
    total = len(numbers)
    critical_missed = [item.number for item in checklist.items if item.critical and marks.get(item.number) is not True]
    ratio = Fraction(done, total)
    passed = ratio * 100 >= Fraction(checklist.threshold_percent) and not critical_missed
    return Score(
        percent=float(ratio * 100),
        passed=passed,
        done=done,
        total=total,
        critical_missed=critical_missed,
        checklist_hash=checklist.content_hash,
        threshold_percent=checklist.threshold_percent,
    )


def item_agreement(marks_by_examiner: Mapping[str, Mapping[int, bool]], items: Iterable[int]) -> dict[int, bool]:
    """Per item: do all examiners agree (unmarked counts as not done)?"""
    return {n: len({m.get(n) is True for m in marks_by_examiner.values()}) <= 1 for n in items}


def agreement_percent(marks_by_examiner: Mapping[str, Mapping[int, bool]], items: Iterable[int]) -> float:
    per_item = item_agreement(marks_by_examiner, items)
    return 100.0 * sum(per_item.values()) / len(per_item) if per_item else 100.0


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa of two examiners' yes/no marks on the same items (e.g. every item of a day).

    None when it is undefined: no items, or both examiners gave one and the same answer throughout
    (chance agreement is then 1).
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} marks against {len(b)}")
    n = len(a)
    if n == 0:
        return None
    observed = Fraction(sum(1 for x, y in zip(a, b, strict=True) if bool(x) == bool(y)), n)
    yes_a = Fraction(sum(1 for x in a if x), n)
    yes_b = Fraction(sum(1 for y in b if y), n)
    chance = yes_a * yes_b + (1 - yes_a) * (1 - yes_b)
    if chance == 1:
        return None
    return float((observed - chance) / (1 - chance))


def pairwise_kappa(
    attempts: Iterable[tuple[Checklist, Mapping[str, Mapping[int, bool]]]],
) -> dict[tuple[str, str], float | None]:
    """Kappa per examiner pair over a day: every item of every attempt both examiners marked."""
    pooled: dict[tuple[str, str], tuple[list[bool], list[bool]]] = {}
    for checklist, sheets in attempts:
        for x, y in itertools.combinations(sorted(sheets), 2):
            a, b = pooled.setdefault((x, y), ([], []))
            for n in checklist.item_numbers:
                a.append(sheets[x].get(n) is True)
                b.append(sheets[y].get(n) is True)
    return {pair: cohen_kappa(a, b) for pair, (a, b) in pooled.items()}


def flag_disagreement(scores: Mapping[str, Score] | Iterable[Score], margin: float = 20) -> bool:
    """True when two examiners' percentages differ by more than `margin` points (the attempt needs review)."""
    values = [s.percent for s in (scores.values() if isinstance(scores, Mapping) else scores)]
    return len(values) >= 2 and max(values) - min(values) > margin


@dataclass(frozen=True)
class AttemptResult:
    scores: dict[str, Score]
    agreement: dict[int, bool]
    flagged: bool
    ratings: dict[str, int | None]


def attempt_result(
    checklist: Checklist,
    sheets: Mapping[str, Mapping[int, bool]],
    ratings: Mapping[str, int | None] | None = None,
    margin: float = 20,
) -> AttemptResult:
    """Each examiner's score on one attempt, their per-item agreement and the review flag."""
    scores = {examiner: score(checklist, marks) for examiner, marks in sheets.items()}
    return AttemptResult(
        scores=scores,
        agreement=item_agreement(sheets, checklist.item_numbers),
        flagged=flag_disagreement(scores, margin),
        ratings=dict(ratings or {}),
    )
