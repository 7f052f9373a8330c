"""An exam day's slots in circuits, with no database: which candidate is at which station when.

A circuit is one station per task (the stations of a task are paired up in their order: the first of each task
form circuit 1, the second circuit 2, ...), so every task must have as many stations as every other. The
candidates of a stream are dealt to the circuits in turn; in a circuit of k stations with n candidates there are
m = max(k, n) slots, and at slot t candidate c is at station (c + t) mod m when that is a station (otherwise
they wait): each candidate does each task of their circuit once, no station has two candidates at once and no
candidate is in two places. m = n slots is also the fewest in which one station can see n candidates.

Streams run one after another in their order: a stream starts at its own time when the list gave one (it may
not begin before the previous stream ends), otherwise when the previous one ends (the first at the day's start).

Problems are PlanError(key, params), said in the page's language (i18n "days" section, "err.<key>").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


class PlanError(ValueError):
    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(f"{key}: {params}")
        self.key, self.params = key, params


@dataclass(frozen=True)
class Timing:
    reading_s: int
    performing_s: int
    changeover_s: int

    @property
    def slot_s(self) -> int:
        return self.reading_s + self.performing_s + self.changeover_s


@dataclass(frozen=True)
class Stream:
    label: str
    starts: dt.datetime | None  # its own start, when the list gave one
    candidates: list[str]


@dataclass(frozen=True)
class Slot:
    station: str
    checklist: str
    candidate: str
    reading_starts_at: dt.datetime
    stream: str


def circuits(stations: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """(station, checklist) pairs in order → circuits, each one station per task in the tasks' order."""
    if not stations:
        raise PlanError("no_stations")
    by_task: dict[str, list[tuple[str, str]]] = {}
    for pair in stations:
        by_task.setdefault(pair[1], []).append(pair)
    counts = {task: len(group) for task, group in by_task.items()}
    if len(set(counts.values())) > 1:
        raise PlanError("uneven_tasks", counts=", ".join(f"{t}: {n}" for t, n in counts.items()))
    width = next(iter(counts.values()))
    return [[group[j] for group in by_task.values()] for j in range(width)]


def generate(stations: list[tuple[str, str]], streams: list[Stream], timing: Timing,
             day_start: dt.datetime) -> list[Slot]:
    """Every slot of the day, in time order."""
    rounds = circuits(stations)
    if not any(s.candidates for s in streams):
        raise PlanError("no_candidates")
    out: list[Slot] = []
    free_at = day_start  # when the previous stream ends
    previous = ""
    for stream in streams:
        if not stream.candidates:
            continue
        start = stream.starts or free_at
        if start < free_at:
            raise PlanError("stream_overlap", stream=stream.label, time=stream.starts.strftime("%H:%M")
                            if stream.starts else "", previous=previous, ends=free_at.strftime("%H:%M"))
        longest = 0
        for j, circuit in enumerate(rounds):
            group = stream.candidates[j::len(rounds)]
            k, n = len(circuit), len(group)
            m = max(k, n)
            longest = max(longest, m if n else 0)
            for t in range(m):
                for i, (station, checklist) in enumerate(circuit):
                    c = (i - t) % m  # the candidate who reached station i at slot t
                    if c < n:
                        out.append(Slot(station, checklist, group[c], start + dt.timedelta(seconds=t * timing.slot_s),
                                        stream.label))
        free_at = start + dt.timedelta(seconds=longest * timing.slot_s)
        previous = stream.label
    return sorted(out, key=lambda s: (s.reading_starts_at, s.station))
