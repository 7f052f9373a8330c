"""Results protocol of one exam day and specialty: candidates × tasks, score % and сдано / не сдано.

Only finalised checklists count towards a result; anything else is shown and marked "не окончательно".
A candidate has "сдано" when every task of the specialty has a final passing result, "не сдано" when any
final result fails, otherwise the row is not final. Scores come from review_server.scores (the checklist
version the marks were made against). Output: JSON, CSV, XLSX (openpyxl) and PDF (fpdf2 + DejaVuSans).
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from . import flags as observer_flags
from .models import Attempt, Candidate, ExamDay, Specialty, Station, Task
from .scores import FAILED, PASSED, Outcome, attempt_outcome, store_outcome
from .spreadsheet import csv_bytes, xlsx_row

NOT_FINAL = "не окончательно"
NO_RESULT = "нет результата"
FLAGS_NOTE = "Примечания: отметки наблюдателей (время UTC — момент видеозаписи, который видел наблюдатель)"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FONT_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


class ProtocolError(LookupError):
    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


@dataclass
class Cell:
    attempt_id: str
    outcome: Outcome

    @property
    def final(self) -> bool:
        return self.outcome.final and self.outcome.passed is not None

    @property
    def text(self) -> str:
        o = self.outcome
        if o.percent is None:
            return NO_RESULT
        mark = "" if self.final else " *"
        return f"{o.percent:.1f} % {o.result}{mark}"


@dataclass
class Row:
    number: str
    cells: dict[str, Cell] = field(default_factory=dict)

    def overall(self, tasks: list[str]) -> str:
        cells = [self.cells.get(t) for t in tasks]
        if any(c is not None and c.final and not c.outcome.passed for c in cells):
            return FAILED
        if cells and all(c is not None and c.final and c.outcome.passed for c in cells):
            return PASSED
        return NOT_FINAL


@dataclass
class Protocol:
    day: dt.date
    specialty_code: str
    specialty_name: str
    tasks: list[tuple[str, str]]  # (code, title)
    rows: list[Row]
    generated_at: dt.datetime
    flags: list[dict[str, Any]] = field(default_factory=list)  # observers' flags on its attempts (the notes)

    @property
    def notes(self) -> list[str]:
        """The notes: the observers' flags on the protocol's attempts, withdrawn ones with their reasons."""
        if not self.flags:
            return []
        return [FLAGS_NOTE, *observer_flags.note_lines(self.flags, "UTC")]

    @property
    def task_codes(self) -> list[str]:
        return [c for c, _ in self.tasks]

    def to_json(self) -> dict[str, Any]:
        codes = self.task_codes
        return {
            "day": self.day.isoformat(),
            "specialty": {"code": self.specialty_code, "name": self.specialty_name},
            "tasks": [{"code": c, "title": t} for c, t in self.tasks],
            "generated_at": self.generated_at.isoformat(),
            "notes": self.notes,
            "flags": self.flags,
            "rows": [
                {
                    "accreditation_number": r.number,
                    "result": r.overall(codes),
                    "tasks": {
                        c: None
                        if c not in r.cells
                        else {"attempt_id": r.cells[c].attempt_id, "final": r.cells[c].final}
                        | r.cells[c].outcome.to_json()
                        for c in codes
                    },
                }
                for r in self.rows
            ],
        }


def build(s: Session, day: dt.date, specialty_code: str) -> Protocol:
    sp = s.scalar(select(Specialty).where(Specialty.code == specialty_code))
    if sp is None:
        raise ProtocolError(f"no specialty {specialty_code!r}", "query specialty")
    day_ids = s.scalars(select(ExamDay.id).where(ExamDay.day == day)).all()
    if not day_ids:
        raise ProtocolError(f"no exam day on {day.isoformat()}", "query day")
    tasks = {t.id: t for t in s.scalars(select(Task).where(Task.specialty_id == sp.id))}
    q = (
        select(Attempt, Candidate.accreditation_number, Station.task_id)
        .join(Candidate, Candidate.id == Attempt.candidate_id)
        .join(Station, Station.id == Attempt.station_id)
        .where(Attempt.exam_day_id.in_(day_ids))
        .where(or_(Candidate.specialty_id == sp.id, Station.specialty_id == sp.id))
        .order_by(Candidate.accreditation_number, Attempt.created_at, Attempt.id)
    )
    rows: dict[str, Row] = {}
    cache: dict[str, Any] = {}
    for att, number, station_task in s.execute(q):
        task_id = att.task_id or station_task
        if task_id is None:
            continue
        if task_id not in tasks:
            t = s.get(Task, task_id)
            if t is None:
                continue
            tasks[task_id] = t
        row = rows.setdefault(number, Row(number))
        # A later attempt at the same task (a re-take) replaces an earlier one.
        out = attempt_outcome(s, att.id, cache)
        store_outcome(s, att.id, out)
        row.cells[tasks[task_id].code] = Cell(att.id, out)
    ordered = sorted(tasks.values(), key=lambda t: t.code)
    attempt_ids = [c.attempt_id for r in rows.values() for c in r.cells.values()]
    return Protocol(
        flags=[f for a in attempt_ids for f in observer_flags.of_attempt(s, a)],
        day=day,
        specialty_code=sp.code,
        specialty_name=sp.name,
        tasks=[(t.code, t.title) for t in ordered],
        rows=list(rows.values()),
        generated_at=dt.datetime.now(dt.UTC),
    )


def to_csv(p: Protocol) -> bytes:
    """One line per candidate: per task percent, result and whether it is final; then the overall result."""
    codes = p.task_codes
    rows = [["accreditation_number", *[f"{c}_{k}" for c in codes for k in ("percent", "result", "final")], "result"]]
    for r in p.rows:
        line: list[str] = [r.number]
        for c in codes:
            cell = r.cells.get(c)
            if cell is None or cell.outcome.percent is None:
                line += ["", NO_RESULT if cell is None else cell.outcome.note, "нет"]
            else:
                line += [f"{cell.outcome.percent:.2f}", cell.outcome.result, "да" if cell.final else "нет"]
        rows.append([*line, r.overall(codes)])
    return csv_bytes(rows)


def _title(p: Protocol) -> list[str]:
    return [
        "ПРОТОКОЛ результатов II этапа аккредитации (практические навыки)",
        f"Специальность: {p.specialty_name} ({p.specialty_code}) · дата экзамена: {p.day.strftime('%d.%m.%Y')}",
    ]


def to_xlsx(p: Protocol) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Протокол"
    for line in _title(p):
        ws.append(xlsx_row([line]))
    ws.append([])
    codes = p.task_codes
    ws.append(xlsx_row(["№", "Номер аккредитуемого", *[f"{c}, %" for c in codes], *codes, "Итог"]))
    for i, r in enumerate(p.rows, start=1):
        pcts = [r.cells[c].outcome.percent if c in r.cells else None for c in codes]
        texts = [r.cells[c].text if c in r.cells else NO_RESULT for c in codes]
        ws.append(xlsx_row([i, r.number, *[None if v is None else round(v, 2) for v in pcts], *texts,
                            r.overall(codes)]))
    ws.append([])
    ws.append(xlsx_row(["* лист не подписан членом комиссии: результат не окончательный"]))
    for line in p.notes:
        ws.append(xlsx_row([line]))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def to_pdf(p: Protocol) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.add_font("DejaVu", "", str(FONT))
    pdf.add_font("DejaVu", "B", str(FONT_BOLD if FONT_BOLD.exists() else FONT))
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 12)
    for line in _title(p):
        pdf.multi_cell(0, 7, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    codes = p.task_codes
    widths = [12, 45] + [max(30, (277 - 12 - 45 - 35) / max(1, len(codes)))] * len(codes) + [35]
    pdf.set_font("DejaVu", "B", 9)
    for w, h in zip(widths, ["№", "Номер аккредитуемого", *codes, "Итог"], strict=True):
        pdf.cell(w, 8, h, border=1, align="C")
    pdf.ln()
    pdf.set_font("DejaVu", "", 9)
    for i, r in enumerate(p.rows, start=1):
        values = [str(i), r.number, *[r.cells[c].text if c in r.cells else NO_RESULT for c in codes], r.overall(codes)]
        for w, v in zip(widths, values, strict=True):
            pdf.cell(w, 7, v, border=1)
        pdf.ln()
    pdf.ln(4)
    for code, title in p.tasks:
        pdf.multi_cell(0, 5, f"{code}: {title}", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(
        0, 5, "* лист не подписан членом комиссии: результат не окончательный", new_x="LMARGIN", new_y="NEXT"
    )
    for line in p.notes:
        pdf.multi_cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 5, f"Сформирован: {p.generated_at.strftime('%d.%m.%Y %H:%M')} UTC", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
