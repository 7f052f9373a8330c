"""Station quality report for methodologists, per exam day and specialty.

Per task and checklist version (items differ between versions, so they are never pooled):
- how often each item was done: the share of "yes" over the finalised sheets (unmarked counts as "no",
  as in scoring);
- examiner agreement per item where two or more examiners marked the same attempt: percentage agreement and
  Cohen's kappa over every pair of sheets (examiners of a pair in login order), plus kappa per examiner pair
  over all items (checklists.scoring.pairwise_kappa);
- flagged discrepancies: an item the examiners marked differently, or two examiners' percentages more than
  20 points apart (checklists.scoring.flag_disagreement); each with a link to the video moment
  `/attempts/{attempt_id}?t=<seconds>` (the earliest of the disagreeing marks' recording offsets, whole
  seconds; 0 when the marks carry no offset or the flag concerns the whole attempt);
- where the checklist has a global rating scale (checklists/FORMAT.md `rating:`; examiners send `rating`
  events), the borderline-regression cut score: the least-squares line of sheet percentage on global rating,
  evaluated at the scale's borderline grade, beside the checklist's fixed threshold (70 %).

Only finalised sheets count (as in the protocol); the number of sheets left out is reported.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from checklists.marks import ExaminerSheet
from checklists.model import Checklist
from checklists.scoring import cohen_kappa, flag_disagreement, pairwise_kappa, score

from .models import Attempt, Candidate, ExamDay, Specialty, Station, Task
from .scores import attempt_outcome
from .spreadsheet import csv_bytes

SCORE_MARGIN = 20.0  # percentage points between two examiners that flag the attempt (checklists.scoring)


class QualityError(LookupError):
    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


def video_link(attempt_id: str, seconds: float | None) -> str:
    """The attempt page at a moment of its recording (format fixed: /attempts/{id}?t=<whole seconds>)."""
    return f"/attempts/{attempt_id}?t={max(0, math.floor(seconds or 0))}"


@dataclass
class CutScore:
    """Borderline regression: percent = intercept + slope × rating, read at the borderline grade."""

    borderline: float
    n: int
    slope: float
    intercept: float
    r2: float | None
    cut_percent: float
    fixed_percent: float

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "borderline regression",
            "borderline_grade": self.borderline,
            "sheets": self.n,
            "slope": self.slope,
            "intercept": self.intercept,
            "r2": self.r2,
            "cut_percent": self.cut_percent,
            "fixed_percent": self.fixed_percent,
        }


def borderline_regression(
    points: Sequence[tuple[float, float]], borderline: float, fixed_percent: float = 70.0
) -> CutScore | None:
    """Least-squares fit of y (checklist %) on x (global rating); None with under two distinct ratings."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in points)
    syy = sum((y - my) ** 2 for _, y in points)
    slope = sxy / sxx
    intercept = my - slope * mx
    r2 = None if syy == 0 else (sxy * sxy) / (sxx * syy)
    return CutScore(borderline, n, slope, intercept, r2, intercept + slope * borderline, fixed_percent)


@dataclass
class ItemStats:
    number: int
    action: str
    critical: bool = False
    sheets: int = 0
    done: int = 0
    pair_a: list[bool] = field(default_factory=list)
    pair_b: list[bool] = field(default_factory=list)

    @property
    def done_share(self) -> float | None:
        return self.done / self.sheets if self.sheets else None

    @property
    def pairs(self) -> int:
        return len(self.pair_a)

    @property
    def agreement_percent(self) -> float | None:
        if not self.pair_a:
            return None
        return 100.0 * sum(a == b for a, b in zip(self.pair_a, self.pair_b, strict=True)) / len(self.pair_a)

    @property
    def kappa(self) -> float | None:
        return cohen_kappa(self.pair_a, self.pair_b)

    def to_json(self) -> dict[str, Any]:
        return {
            "item": self.number,
            "action": self.action,
            "critical": self.critical,
            "sheets": self.sheets,
            "done": self.done,
            "done_share": self.done_share,
            "pairs": self.pairs,
            "agreement_percent": self.agreement_percent,
            "kappa": self.kappa,
        }


@dataclass
class Discrepancy:
    attempt_id: str
    accreditation_number: str | None
    station: str
    kind: str  # "item": examiners marked an item differently; "score": percentages > SCORE_MARGIN apart
    item: int | None
    action: str
    marks: dict[str, Any]  # examiner -> yes/no for an item, or percent for a score
    seconds: float | None

    @property
    def link(self) -> str:
        return video_link(self.attempt_id, self.seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt_id": self.attempt_id,
            "accreditation_number": self.accreditation_number,
            "station": self.station,
            "kind": self.kind,
            "item": self.item,
            "action": self.action,
            "marks": self.marks,
            "seconds": self.seconds,
            "link": self.link,
        }


@dataclass
class TaskReport:
    task: str
    task_title: str
    checklist: Checklist
    stations: set[str] = field(default_factory=set)
    attempts: int = 0
    sheets: int = 0
    sheets_not_final: int = 0
    double_marked: int = 0  # attempts with two or more finalised sheets
    items: dict[int, ItemStats] = field(default_factory=dict)
    sheet_marks: list[dict[str, dict[int, bool]]] = field(default_factory=list)  # for pairwise kappa
    discrepancies: list[Discrepancy] = field(default_factory=list)
    rating_points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def cut_score(self) -> CutScore | None:
        scale = self.checklist.rating
        if scale is None:
            return None
        return borderline_regression(self.rating_points, scale.borderline, self.checklist.threshold_percent)

    def to_json(self) -> dict[str, Any]:
        cl = self.checklist
        pairs = pairwise_kappa((cl, m) for m in self.sheet_marks)
        cut = self.cut_score
        return {
            "task": self.task,
            "task_title": self.task_title,
            "checklist": {"title": cl.title, "version": cl.version, "sha256": cl.content_hash},
            "stations": sorted(self.stations),
            "attempts": self.attempts,
            "sheets": self.sheets,
            "sheets_not_final": self.sheets_not_final,
            "double_marked_attempts": self.double_marked,
            "fixed_percent": cl.threshold_percent,
            "items": [self.items[n].to_json() for n in cl.item_numbers],
            "examiner_pairs": [{"examiners": list(p), "kappa": k} for p, k in sorted(pairs.items())],
            "discrepancies": [d.to_json() for d in self.discrepancies],
            "global_rating": None
            if cl.rating is None
            else {
                "min": cl.rating.minimum,
                "max": cl.rating.maximum,
                "borderline": cl.rating.borderline,
                "rated_sheets": len(self.rating_points),
            },
            "cut_score": None if cut is None else cut.to_json(),
        }


@dataclass
class QualityReport:
    day: dt.date
    specialty_code: str
    specialty_name: str
    tasks: list[TaskReport]
    unscored: list[dict[str, str]]  # attempts left out, with why
    generated_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "exam_day": self.day.isoformat(),
            "specialty": {"code": self.specialty_code, "name": self.specialty_name},
            "generated_at": self.generated_at.isoformat(),
            "tasks": [t.to_json() for t in self.tasks],
            "unscored": self.unscored,
        }


def _last_offset(sheet: ExaminerSheet, item: int) -> float | None:
    """Recording offset of the mark that set the item's current value on this sheet."""
    for ev in reversed(sheet.history):
        if ev.kind == "mark" and ev.item == item:
            return ev.recording_offset_s
    return None


def add_attempt(
    rep: TaskReport, attempt_id: str, number: str | None, station: str, sheets: dict[str, ExaminerSheet]
) -> None:
    """Count one attempt's finalised sheets into the task's figures (the report's arithmetic, testable alone)."""
    cl = rep.checklist
    rep.attempts += 1
    rep.stations.add(station)
    final = {ex: sh for ex, sh in sheets.items() if sh.finalised}
    rep.sheets_not_final += len(sheets) - len(final)
    rep.sheets += len(final)
    for item in cl.items:
        st = rep.items.setdefault(item.number, ItemStats(item.number, item.action, item.critical))
        st.sheets += len(final)
        st.done += sum(1 for sh in final.values() if sh.marks.get(item.number) is True)
    pct: dict[str, Any] = {}
    for ex, sh in final.items():
        pct[ex] = sc = score(cl, sh.marks)
        if cl.rating is not None and sh.rating is not None:
            rep.rating_points.append((float(sh.rating), sc.percent))
    if len(final) < 2:
        return
    rep.double_marked += 1
    rep.sheet_marks.append({ex: sh.marks for ex, sh in final.items()})
    for x, y in itertools.combinations(sorted(final), 2):
        for n in cl.item_numbers:
            rep.items[n].pair_a.append(final[x].marks.get(n) is True)
            rep.items[n].pair_b.append(final[y].marks.get(n) is True)
    for item in cl.items:
        marks = {ex: final[ex].marks.get(item.number) is True for ex in sorted(final)}
        if len(set(marks.values())) > 1:
            offsets = [o for ex in final if (o := _last_offset(final[ex], item.number)) is not None]
            moment = min(offsets, default=None)
            rep.discrepancies.append(
                Discrepancy(attempt_id, number, station, "item", item.number, item.action, marks, moment)
            )
    if flag_disagreement(pct, SCORE_MARGIN):
        percents = {ex: round(sc.percent, 2) for ex, sc in sorted(pct.items())}
        rep.discrepancies.append(Discrepancy(attempt_id, number, station, "score", None, "", percents, None))


def build(s: Session, day: dt.date, specialty_code: str) -> QualityReport:
    sp = s.scalar(select(Specialty).where(Specialty.code == specialty_code))
    if sp is None:
        raise QualityError(f"no specialty {specialty_code!r}", "query specialty")
    day_ids = s.scalars(select(ExamDay.id).where(ExamDay.day == day)).all()
    if not day_ids:
        raise QualityError(f"no exam day on {day.isoformat()}", "query exam_day")
    q = (
        select(Attempt, Candidate.accreditation_number, Station.code, Station.task_id)
        .join(Station, Station.id == Attempt.station_id)
        .outerjoin(Candidate, Candidate.id == Attempt.candidate_id)
        .where(Attempt.exam_day_id.in_(day_ids))
        .where(or_(Candidate.specialty_id == sp.id, Station.specialty_id == sp.id))
        .order_by(Attempt.id)
    )
    groups: dict[tuple[str, str], TaskReport] = {}
    unscored: list[dict[str, str]] = []
    cache: dict[str, Any] = {}
    tasks: dict[int, Task | None] = {}
    for att, number, station, station_task in s.execute(q).all():
        task_id = att.task_id or station_task
        if task_id is not None and task_id not in tasks:
            tasks[task_id] = s.get(Task, task_id)
        task = tasks.get(task_id) if task_id is not None else None
        out = attempt_outcome(s, att.id, cache)
        if out.checklist is None:
            unscored.append({"attempt_id": att.id, "why": out.note or "no checklist"})
            continue
        code = task.code if task is not None else "—"
        key = (code, out.checklist.content_hash)
        rep = groups.get(key)
        if rep is None:
            rep = groups[key] = TaskReport(code, task.title if task is not None else "", out.checklist)
        add_attempt(rep, att.id, number, station, out.sheets)
    return QualityReport(
        day=day,
        specialty_code=sp.code,
        specialty_name=sp.name,
        tasks=[groups[k] for k in sorted(groups)],
        unscored=unscored,
        generated_at=dt.datetime.now(dt.UTC),
    )


def _num(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def to_csv(r: QualityReport) -> bytes:
    """Three tables one after another, each with its own header row: items, discrepancies, cut scores."""
    rows: list[list[Any]] = []
    rows.append(["table", "task", "checklist_version", "item", "action", "critical", "sheets", "done", "done_share",
                "pairs", "agreement_percent", "kappa"])
    for t in r.tasks:
        for n in t.checklist.item_numbers:
            it = t.items[n]
            rows.append(["items", t.task, t.checklist.version, n, it.action, "да" if it.critical else "нет", it.sheets,
                        it.done, _num(it.done_share), it.pairs, _num(it.agreement_percent, 1), _num(it.kappa)])
    rows.append([])
    rows.append(["table", "task", "attempt_id", "accreditation_number", "station", "kind", "item", "marks", "link"])
    for t in r.tasks:
        for d in t.discrepancies:
            marks = "; ".join(f"{ex}={'да' if v is True else 'нет' if v is False else v}" for ex, v in d.marks.items())
            rows.append(["discrepancies", t.task, d.attempt_id, d.accreditation_number or "", d.station, d.kind,
                        "" if d.item is None else d.item, marks, d.link])
    rows.append([])
    rows.append(["table", "task", "checklist_version", "rated_sheets", "borderline_grade", "slope", "intercept", "r2",
                "cut_percent", "fixed_percent"])
    for t in r.tasks:
        cut = t.cut_score
        if cut is None:
            rows.append(["cut_scores", t.task, t.checklist.version, len(t.rating_points), "", "", "", "", "",
                        f"{t.checklist.threshold_percent:.2f}"])
        else:
            rows.append(["cut_scores", t.task, t.checklist.version, cut.n, f"{cut.borderline:g}", _num(cut.slope),
                        _num(cut.intercept), _num(cut.r2), _num(cut.cut_percent, 2), f"{cut.fixed_percent:.2f}"])
    return csv_bytes(rows)
