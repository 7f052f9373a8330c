"""The day's route sheets (маршрутные листы), printed from its slots: one page per candidate (when and where each of
their tasks is) and one page per station (who comes when, and the station's examiners). PDF through fpdf2 with
the DejaVu font, as the results protocol (protocol.py). Accreditation numbers only: no candidate's name.
A day not yet fixed prints with "ЧЕРНОВИК" on every page.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from .day_plan import assignments, checklist_choices, day_candidates, day_stations, load, slots_of
from .models import Specialty
from .protocol import FONT, FONT_BOLD


@dataclass
class Line:
    at: str  # HH:MM local
    station: str
    station_name: str
    task: str
    number: str
    attempt_id: str


@dataclass
class RouteData:
    day: dt.date
    title: str
    specialty: str
    fixed: bool
    reading_s: int
    performing_s: int
    lines: list[Line]
    streams: dict[str, str] = field(default_factory=dict)  # number -> stream
    examiners: dict[str, list[str]] = field(default_factory=dict)  # station code -> names


def gather(s: Session, day_id: int, timezone: str) -> RouteData:
    day, plan = load(s, day_id)
    tz = zoneinfo.ZoneInfo(timezone)
    titles = {c.stem: c.title for c in checklist_choices()}
    tasks = {st.id: titles.get(stem, stem) for st, stem in day_stations(s, day.id)}
    lines = [Line(slot.reading_starts_at.astimezone(tz).strftime("%H:%M"), st.code, st.name, tasks.get(st.id, ""),
                  number, slot.attempt_id) for slot, st, number in slots_of(s, day.id)]
    sp = s.get(Specialty, plan.specialty_id) if plan else None
    streams = {number: dc.stream for dc, number in day_candidates(s, day.id)}
    examiners: dict[str, list[str]] = {}
    for _a, user, st in assignments(s, day.id):
        examiners.setdefault(st.code, []).append(user.display_name or user.login)
    return RouteData(day.day, day.title, f"{sp.name} ({sp.code})" if sp else "", bool(plan and plan.fixed_at),
                     plan.reading_s if plan else 0, plan.performing_s if plan else 0, lines, streams, examiners)


def _pdf() -> Any:
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.add_font("DejaVu", "", str(FONT))
    pdf.add_font("DejaVu", "B", str(FONT_BOLD if FONT_BOLD.exists() else FONT))
    pdf.set_auto_page_break(True, margin=15)
    return pdf


def _head(pdf: Any, data: RouteData, heading: str, subject: str) -> None:
    pdf.add_page()
    if not data.fixed:
        pdf.set_font("DejaVu", "B", 10)
        pdf.set_text_color(180, 30, 30)
        pdf.cell(0, 6, "ЧЕРНОВИК: расписание не утверждено", new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    pdf.set_font("DejaVu", "B", 13)
    pdf.multi_cell(0, 7, heading, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 10)
    pdf.multi_cell(0, 5, "II этап аккредитации: практические навыки (ОСКЭ)", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 5, f"Дата: {data.day.strftime('%d.%m.%Y')}" + (f" · {data.title}" if data.title else ""),
                   new_x="LMARGIN", new_y="NEXT")
    if data.specialty:
        pdf.multi_cell(0, 5, f"Специальность: {data.specialty}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("DejaVu", "B", 12)
    pdf.multi_cell(0, 7, subject, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)


def _table(pdf: Any, widths: tuple[int, ...], header: list[str], rows: list[list[str]]) -> None:
    """A table whose long cells wrap (fpdf2's table), the header repeated on a new page."""
    from fpdf.fonts import FontFace

    pdf.set_font("DejaVu", "", 9)
    with pdf.table(col_widths=widths, width=sum(widths), line_height=5, padding=1.2, text_align="LEFT",
                   headings_style=FontFace(emphasis="BOLD", fill_color=(235, 238, 242))) as table:
        table.row(header)
        for values in rows:
            table.row(values)


def _timing(pdf: Any, data: RouteData) -> None:
    pdf.ln(3)
    pdf.set_font("DejaVu", "", 9)
    pdf.multi_cell(0, 5, f"Время указано местное, начало ознакомления с заданием: ознакомление {data.reading_s} с, "
                         f"выполнение {data.performing_s} с.", new_x="LMARGIN", new_y="NEXT")


def by_candidate(data: RouteData) -> bytes:
    pdf = _pdf()
    numbers = sorted({line.number for line in data.lines})
    for number in numbers:
        stream = data.streams.get(number, "")
        _head(pdf, data, "МАРШРУТНЫЙ ЛИСТ АККРЕДИТУЕМОГО",
              f"Номер аккредитуемого: {number}" + (f" · поток {stream}" if stream else ""))
        mine = [line for line in data.lines if line.number == number]
        _table(pdf, (10, 18, 52, 110), ["№", "Время", "Станция", "Задание"],
               [[str(i), line.at, line.station + (f" {line.station_name}" if line.station_name != line.station
                                                  else ""), line.task] for i, line in enumerate(mine, 1)])
        _timing(pdf, data)
    if not numbers:
        _head(pdf, data, "МАРШРУТНЫЕ ЛИСТЫ АККРЕДИТУЕМЫХ", "Расписание дня пусто")
    return bytes(pdf.output())


def by_station(data: RouteData) -> bytes:
    pdf = _pdf()
    codes = sorted({line.station for line in data.lines})
    for code in codes:
        mine = [line for line in data.lines if line.station == code]
        name = mine[0].station_name
        _head(pdf, data, "ЛИСТ СТАНЦИИ", f"Станция {code}" + (f" ({name})" if name and name != code else ""))
        pdf.set_font("DejaVu", "", 10)
        pdf.multi_cell(0, 5, f"Задание: {mine[0].task}", new_x="LMARGIN", new_y="NEXT")
        examiners = ", ".join(data.examiners.get(code, [])) or "не назначены"
        pdf.multi_cell(0, 5, f"Члены АПК: {examiners}", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        _table(pdf, (10, 18, 62, 100), ["№", "Время", "Номер аккредитуемого", "Попытка"],
               [[str(i), line.at, line.number, line.attempt_id] for i, line in enumerate(mine, 1)])
        _timing(pdf, data)
    if not codes:
        _head(pdf, data, "ЛИСТЫ СТАНЦИЙ", "Расписание дня пусто")
    return bytes(pdf.output())
