"""Station quality report (review_server/quality.py) on data small enough to check by hand, through the API,
the CSV and the page; and the stored score following a finalisation (routes/marks.py → scores.refresh)."""

from __future__ import annotations

import csv
import io
import uuid
from html import unescape
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from checklists.marks import MarkEvent as WireEvent
from review_server.models import AuditEvent, Score
from review_server.quality import borderline_regression, video_link

from .archive_helpers import CPR, add_schedule, checklist, events, link_attempt, post_marks
from .conftest import World

CL = checklist(CPR)  # 19 items, global rating 1..5 with borderline 3, fixed threshold 70 %
ALL = set(CL.item_numbers)


def sheet(attempt: str, examiner: str, done: set[int], rating: int | None, *, final: bool = True,
          offsets: dict[int, float] | None = None) -> list[dict[str, Any]]:
    """One examiner's events: a mark per item (offset 100 + item s unless given), a rating, a finalise."""
    offsets = offsets or {}
    out: list[dict[str, Any]] = []

    def add(**kw: Any) -> None:
        out.append(WireEvent.new(attempt_id=attempt, station_id="S1", examiner=examiner,
                                 checklist_hash=CL.content_hash, seq=len(out) + 1, **kw).to_json())

    for n in CL.item_numbers:
        add(kind="mark", item=n, done=n in done, recording_offset_s=offsets.get(n, 100.0 + n))
    if rating is not None:
        add(kind="rating", rating=rating)
    if final:
        add(kind="finalise")
    return out


def test_borderline_regression_by_hand() -> None:
    exact = borderline_regression([(1, 20), (2, 40), (3, 60), (4, 80), (5, 100)], 3)
    assert exact is not None
    assert (exact.slope, exact.intercept, exact.cut_percent, exact.r2) == pytest.approx((20, 0, 60, 1))
    # mean x 3, mean y 65, Sxx 2, Sxy 30, Syy 500: slope 15, intercept 20, cut at 3 = 65, r² = 900/1000
    fit = borderline_regression([(2, 50), (3, 60), (3, 70), (4, 80)], 3, 70)
    assert fit is not None
    assert (fit.slope, fit.intercept, fit.cut_percent, fit.r2, fit.n) == pytest.approx((15, 20, 65, 0.9, 4))
    assert fit.fixed_percent == 70
    assert borderline_regression([(3, 50), (3, 90)], 3) is None  # one grade only: no line
    assert borderline_regression([(4, 50)], 3) is None
    assert video_link("A1", 12.7) == "/attempts/A1?t=12" and video_link("A1", None) == "/attempts/A1?t=0"


async def test_quality_report_by_hand(world: World) -> None:
    ids = add_schedule(world)
    world.schedule("A1", "A2", "A3", "A5")
    # A1: exa all 19 (rating 5); exb all but item 1 (18/19, rating 4). Item 1 marked at 12.7 s and 15.2 s.
    # A2: exa and exb items 1..10 (10/19, both rating 2).  A3: exa alone, items 1..14 (rating 3).
    # A5: exa, not finalised: left out.
    evs = (
        sheet("A1", "exa", ALL, 5, offsets={1: 12.7})
        + sheet("A1", "exb", ALL - {1}, 4, offsets={1: 15.2})
        + sheet("A2", "exa", set(range(1, 11)), 2)
        + sheet("A2", "exb", set(range(1, 11)), 2)
        + sheet("A3", "exa", set(range(1, 15)), 3)
        + sheet("A5", "exa", ALL, 5, final=False)
    )
    await post_marks(world, evs)
    for i, a in enumerate(("A1", "A2", "A3", "A5")):
        link_attempt(world, a, f"26110{i}", ids, "CPR")
    client = world.api.client
    arch = world.headers("archivist")
    resp = await client.get("/api/reports/quality?exam_day=2026-06-01&specialty=NURSE", headers=arch)
    assert resp.status == 200, await resp.text()
    rep = await resp.json()
    assert rep["exam_day"] == "2026-06-01" and rep["unscored"] == []
    [task] = rep["tasks"]
    assert task["task"] == "CPR" and task["checklist"]["sha256"] == CL.content_hash
    assert (task["attempts"], task["sheets"], task["sheets_not_final"], task["double_marked_attempts"]) == (4, 5, 1, 2)
    items = {it["item"]: it for it in task["items"]}
    # item 1: yes on A1 exa, A2 exa+exb, A3 exa = 4 of 5; pairs (yes,no) and (yes,yes): 50 %, kappa 0
    assert (items[1]["done"], items[1]["sheets"], items[1]["done_share"]) == (4, 5, 0.8)
    assert items[1]["pairs"] == 2 and items[1]["agreement_percent"] == 50.0
    assert items[1]["kappa"] == pytest.approx(0.0)
    # item 11: yes on A1 (both) and A3 = 3 of 5; pairs (yes,yes), (no,no): kappa 1
    assert items[11]["done_share"] == pytest.approx(0.6) and items[11]["kappa"] == pytest.approx(1.0)
    # item 15: yes on A1 only (both) = 2 of 5
    assert items[15]["done_share"] == pytest.approx(0.4) and items[15]["agreement_percent"] == 100.0
    # exa-exb over all 38 item pairs: 37 agree; yes 29 and 28 → kappa (37/38 − 902/1444) / (1 − 902/1444)
    [pair] = task["examiner_pairs"]
    assert pair["examiners"] == ["exa", "exb"] and pair["kappa"] == pytest.approx(504 / 542)
    # one discrepancy: A1 item 1, at the earlier of the two marks (12.7 s)
    [d] = task["discrepancies"]
    assert (d["attempt_id"], d["kind"], d["item"], d["marks"]) == ("A1", "item", 1, {"exa": True, "exb": False})
    assert d["accreditation_number"] == "261100" and d["link"] == "/attempts/A1?t=12"
    # cut score: finalised rated sheets (5, 100), (4, 1800/19), (2, 1000/19) twice, (3, 1400/19)
    x = [5, 4, 2, 2, 3]
    y = [100, 1800 / 19, 1000 / 19, 1000 / 19, 1400 / 19]
    slope, intercept = np.polyfit(x, y, 1)
    cut = task["cut_score"]
    assert cut["sheets"] == 5 and cut["borderline_grade"] == 3 and cut["fixed_percent"] == 70
    assert cut["slope"] == pytest.approx(slope) and cut["cut_percent"] == pytest.approx(intercept + 3 * slope)

    # The same as CSV: three tables.
    resp = await client.get("/api/reports/quality?exam_day=2026-06-01&specialty=NURSE&format=csv", headers=arch)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    rows = [r for r in csv.reader(io.StringIO(await resp.text())) if r]  # tables apart by blank lines
    item1 = next(r for r in rows if r[0] == "items" and r[3] == "1")
    assert item1[6:] == ["5", "4", "0.800", "2", "50.0", "0.000"]
    assert [r[2] for r in rows if r[0] == "discrepancies"] == ["A1"]
    assert next(r for r in rows if r[0] == "discrepancies")[-1] == "/attempts/A1?t=12"
    cut_row = next(r for r in rows if r[0] == "cut_scores")
    assert float(cut_row[8]) == pytest.approx(intercept + 3 * slope, abs=0.005) and cut_row[9] == "70.00"

    # The page: the video link, for admins too; not for examiners; audited.
    page = await client.get("/reports/quality?exam_day=2026-06-01&specialty=NURSE", headers=world.headers("admin"))
    html = await page.text()
    assert page.status == 200 and 'href="/attempts/A1?t=12"' in html and "Каппа Коэна" in html
    assert f"{intercept + 3 * slope:.1f} %" in html and "261100" in html
    en = await client.get("/reports/quality?exam_day=2026-06-01&specialty=NURSE&lang=en", headers=arch)
    assert "Cohen's kappa" in unescape(await en.text())  # autoescaped: Cohen&#39;s
    assert (await client.get("/reports/quality", headers=world.headers("examiner"))).status == 403
    views = world.api.run(
        lambda s: s.scalars(select(AuditEvent.details).where(AuditEvent.action == "report.quality.view")).all()
    )
    assert [v["format"] for v in views] == ["json", "csv", "html", "html"]


async def test_quality_report_bad_input(world: World) -> None:
    add_schedule(world)
    client, arch = world.api.client, world.headers("archivist")
    for query, status, where in (
        ("exam_day=2026-13-01&specialty=NURSE", 400, "query exam_day"),
        ("specialty=NURSE", 400, "query exam_day"),
        ("exam_day=2026-06-01&specialty=../x", 400, "query specialty"),
        ("exam_day=2026-06-01&specialty=NOPE", 404, "query specialty"),
        ("exam_day=2026-06-02&specialty=NURSE", 404, "query exam_day"),
        ("exam_day=2026-06-01&specialty=NURSE&format=pdf", 400, "query format"),
    ):
        resp = await client.get(f"/api/reports/quality?{query}", headers=arch)
        assert resp.status == status and (await resp.json())["where"] == where, query
    page = await client.get("/reports/quality?exam_day=2026-06-01&specialty=NOPE", headers=arch)
    # escaped, as markupsafe writes a quote
    assert page.status == 404 and "no specialty &#39;NOPE&#39; (query specialty)" in await page.text()


async def test_finalise_refreshes_the_stored_result(world: World) -> None:
    """POST /api/attempts/{id}/finalise updates `scores` (protocol and archive search read it)."""
    ids = add_schedule(world)
    world.schedule("F1")
    await post_marks(world, events("F1", "S1", CL, {1, 2, 3}, finalise=False))  # 3 of 19, not signed
    link_attempt(world, "F1", "2611090", ids, "CPR")
    client, arch = world.api.client, world.headers("archivist")

    def stored() -> tuple[float, bool, bool]:
        row = world.api.run(lambda s: s.scalar(select(Score).where(Score.attempt_id == "F1")))
        return (round(row.percent, 2), row.passed, row.final)

    async def found(result: str) -> list[str]:
        resp = await client.get(f"/api/archive/attempts?result={result}", headers=arch)
        return [a["attempt_id"] for a in (await resp.json())["attempts"]]

    assert stored() == (15.79, False, False)
    assert await found("not_final") == ["F1"] and await found("failed") == []
    body = {"event_id": str(uuid.uuid4()), "checklist_hash": CL.content_hash, "wall_time": "2026-06-01T10:00:00Z",
            "seq": 50}
    resp = await client.post("/api/attempts/F1/finalise", json=body, headers=world.headers("examiner"))
    assert resp.status == 200, await resp.text()
    assert stored() == (15.79, False, True)
    assert await found("failed") == ["F1"] and await found("not_final") == []
    # A correction after signing moves the stored percentage too (4 of 19).
    corr = body | {"event_id": str(uuid.uuid4()), "seq": 51, "kind": "mark", "item": 4, "done": True,
                   "reason": "по видео выполнено"}
    resp = await client.post("/api/attempts/F1/marks", json=corr, headers=world.headers("examiner"))
    assert resp.status == 200, await resp.text()
    assert stored() == (21.05, False, True)
