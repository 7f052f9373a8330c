"""The day's slots in circuits (circuits.py): each candidate does each task of their circuit once, no station and
no candidate is in two places at once, streams follow each other; the plans that cannot work are refused."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from review_server.circuits import PlanError, Stream, Timing, circuits, generate

T0 = dt.datetime(2026, 6, 1, 6, 0, tzinfo=dt.UTC)
TIMING = Timing(30, 510, 60)


def stations(tasks: int, per_task: int) -> list[tuple[str, str]]:
    return [(f"st{t}{j}", f"task{t}") for j in range(per_task) for t in range(tasks)]


@settings(max_examples=60, deadline=None)
@given(tasks=st.integers(1, 4), per_task=st.integers(1, 3),
       sizes=st.lists(st.integers(0, 14), min_size=1, max_size=3))
def test_every_candidate_does_every_task_once_and_nobody_is_in_two_places(tasks: int, per_task: int,
                                                                          sizes: list[int]) -> None:
    if not any(sizes):
        sizes = [1]
    streams = [Stream(str(i), None, [f"c{i}-{n}" for n in range(k)]) for i, k in enumerate(sizes)]
    slots = generate(stations(tasks, per_task), streams, TIMING, T0)
    everyone = [c for s in streams for c in s.candidates]
    by_candidate = Counter(s.candidate for s in slots)
    assert set(by_candidate) == set(everyone) and set(by_candidate.values()) == {tasks}
    assert all(len({s.checklist for s in slots if s.candidate == c}) == tasks for c in everyone)
    assert max(Counter((s.station, s.reading_starts_at) for s in slots).values()) == 1
    assert max(Counter((s.candidate, s.reading_starts_at) for s in slots).values()) == 1
    # A candidate stays in one circuit; streams do not overlap and start when the previous one ends.
    circuit_of = {code: j for j, c in enumerate(circuits(stations(tasks, per_task))) for code, _ in c}
    assert all(len({circuit_of[s.station] for s in slots if s.candidate == c}) == 1 for c in everyone)
    ends = {}
    for s in slots:
        ends[s.stream] = max(ends.get(s.stream, T0), s.reading_starts_at + dt.timedelta(seconds=TIMING.slot_s))
    starts = {label: min(s.reading_starts_at for s in slots if s.stream == label) for label in ends}
    ordered = [x.label for x in streams if x.candidates]
    assert starts[ordered[0]] == T0
    assert all(starts[b] == ends[a] for a, b in zip(ordered, ordered[1:], strict=False))


def test_a_full_circuit_keeps_every_station_busy() -> None:
    slots = generate(stations(3, 1), [Stream("1", None, ["a", "b", "c"])], TIMING, T0)
    assert len(slots) == 9 and len({s.reading_starts_at for s in slots}) == 3  # three rounds of three
    first = [s.candidate for s in slots if s.reading_starts_at == T0]
    assert first == ["a", "b", "c"]  # in station order: st00, st10, st20
    second = {s.station: s.candidate for s in slots if s.reading_starts_at == T0 + dt.timedelta(seconds=600)}
    assert second == {"st10": "a", "st20": "b", "st00": "c"}  # each moves on to the next station


def test_a_stream_at_its_own_time_and_one_that_would_overlap() -> None:
    later = T0 + dt.timedelta(hours=2)
    slots = generate(stations(2, 1), [Stream("1", None, ["a", "b"]), Stream("2", later, ["c", "d"])], TIMING, T0)
    assert min(s.reading_starts_at for s in slots if s.stream == "2") == later
    with pytest.raises(PlanError) as err:
        generate(stations(2, 1), [Stream("1", None, ["a", "b", "c"]), Stream("2", T0 + dt.timedelta(minutes=15),
                                                                               ["d"])], TIMING, T0)
    assert err.value.key == "stream_overlap" and err.value.params["previous"] == "1"


@pytest.mark.parametrize(("pairs", "streams", "key"), [
    ([], [Stream("1", None, ["a"])], "no_stations"),
    ([("s1", "cpr"), ("s2", "cpr"), ("s3", "bp")], [Stream("1", None, ["a"])], "uneven_tasks"),
    ([("s1", "cpr")], [Stream("1", None, [])], "no_candidates"),
])
def test_plans_that_cannot_work(pairs: list[tuple[str, str]], streams: list[Stream], key: str) -> None:
    with pytest.raises(PlanError) as err:
        generate(pairs, streams, TIMING, T0)
    assert err.value.key == key
