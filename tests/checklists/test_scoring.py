"""Scoring by the accreditation rule, and agreement between examiners."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checklists.loader import builtin_checklists, parse_checklist
from checklists.model import Checklist
from checklists.scoring import (
    agreement_percent,
    attempt_result,
    cohen_kappa,
    flag_disagreement,
    item_agreement,
    pairwise_kappa,
    score,
)


def make(n: int, critical: tuple[int, ...] = (), threshold: float | None = None) -> Checklist:
    lines = ["specialty: Сестринское дело", "title: Тест", 'version: "1"', "items:"]
    for i in range(1, n + 1):
        lines += [f"  - number: {i}", f"    action: Действие {i}"] + (["    critical: true"] if i in critical else [])
    if threshold is not None:
        lines.append(f"pass_threshold_percent: {threshold}")
    return parse_checklist("\n".join(lines) + "\n")


def test_seventy_percent_passes_sixty_nine_fails() -> None:
    c = make(10)
    assert score(c, {i: True for i in range(1, 8)}).passed is True  # 70 %
    s = score(c, {i: True for i in range(1, 7)} | {7: False})
    assert (s.percent, s.passed, s.done, s.total) == (60.0, False, 6, 10)
    c19 = make(19)
    s = score(c19, {i: True for i in range(1, 14)})  # 13/19 = 68.4 %
    assert s.passed is False
    assert score(c19, {i: True for i in range(1, 15)}).passed is True  # 14/19 = 73.7 %
    c3 = make(3, threshold=66.67)
    assert score(c3, {1: True, 2: True}).passed is False  # 66.666… < 66.67: no rounding up
    assert score(c, {}).checklist_hash == c.content_hash


def test_critical_item_left_undone_fails_whatever_the_percent() -> None:
    c = make(10, critical=(3,))
    all_but_3 = {i: True for i in range(1, 11) if i != 3}
    s = score(c, all_but_3)
    assert s.percent == 90.0 and s.passed is False and s.critical_missed == [3]
    assert score(c, all_but_3 | {3: True}).passed is True
    assert score(c, all_but_3 | {3: False}).critical_missed == [3]


def test_marks_for_unknown_items_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^item: not in checklist 'Тест': \[11\]"):
        score(make(10), {11: True})


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 30),
    threshold=st.sampled_from([50, 60, 70, 70.5, 80, 100]),
    data=st.data(),
)
def test_score_properties(n: int, threshold: float, data: st.DataObject) -> None:
    critical = tuple(data.draw(st.sets(st.integers(1, n), max_size=3)))
    c = make(n, critical, threshold)
    marks = data.draw(st.dictionaries(st.integers(1, n), st.booleans()))
    s = score(c, marks)
    done = sum(marks.values())
    assert s.done == done and s.total == n
    assert s.percent == pytest.approx(100 * done / n)
    assert s.critical_missed == sorted(i for i in critical if not marks.get(i))
    assert s.passed == (done * 100 >= threshold * n and not s.critical_missed)
    # Marking one more item done never lowers the score nor turns a pass into a fail.
    undone = [i for i in range(1, n + 1) if not marks.get(i)]
    if undone:
        better = score(c, marks | {data.draw(st.sampled_from(undone)): True})
        assert better.percent > s.percent
        assert better.passed or not s.passed


def test_cohen_kappa_known_values() -> None:
    a = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    b = [True] * 20 + [True] * 5 + [False] * 10 + [False] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)  # po = .7, pe = .5
    assert cohen_kappa([True, False, True], [True, False, True]) == 1.0
    assert cohen_kappa([True, False], [False, True]) == -1.0
    assert cohen_kappa([True, True], [True, True]) is None  # chance agreement is 1: undefined
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError):
        cohen_kappa([True], [True, False])


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_cohen_kappa_is_symmetric_and_bounded(pairs: list[tuple[bool, bool]]) -> None:
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs]
    k = cohen_kappa(a, b)
    assert k == cohen_kappa(b, a)
    if k is not None:
        assert -1.0 - 1e-9 <= k <= 1.0 + 1e-9
        assert (k == pytest.approx(1.0)) == (a == b)


def test_agreement_and_disagreement_flag() -> None:
    c = make(10)
    sheets = {
        "ivanova": {i: True for i in range(1, 9)},  # 80 %
        "petrov": {i: True for i in range(1, 7)},  # 60 %
    }
    per_item = item_agreement(sheets, c.item_numbers)
    assert [n for n, agree in per_item.items() if not agree] == [7, 8]
    assert agreement_percent(sheets, c.item_numbers) == 80.0
    result = attempt_result(c, sheets, {"ivanova": 4, "petrov": 3})
    assert result.scores["ivanova"].percent == 80.0 and result.scores["petrov"].percent == 60.0
    assert result.flagged is False  # 20 points: not more than the margin
    assert flag_disagreement(result.scores, margin=19.9) is True
    sheets["petrov"] = {i: True for i in range(1, 6)}  # 50 %
    assert attempt_result(c, sheets).flagged is True
    assert flag_disagreement([result.scores["ivanova"]]) is False  # one examiner: nothing to compare


def test_pairwise_kappa_over_a_day() -> None:
    cpr, injection, _ = builtin_checklists()
    all_done_cpr = {n: True for n in cpr.item_numbers}
    day = [
        (cpr, {"ivanova": all_done_cpr, "petrov": all_done_cpr | {1: False}}),
        (injection, {"ivanova": {1: True}, "petrov": {1: True}, "sidorova": {}}),
    ]
    kappas = pairwise_kappa(day)
    assert set(kappas) == {("ivanova", "petrov"), ("ivanova", "sidorova"), ("petrov", "sidorova")}
    a = [True] * 19 + [True] + [False] * 19
    b = [False] + [True] * 18 + [True] + [False] * 19
    assert kappas[("ivanova", "petrov")] == pytest.approx(cohen_kappa(a, b))
    assert kappas[("ivanova", "sidorova")] == pytest.approx(0.0)  # agreement no better than chance
