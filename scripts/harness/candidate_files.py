"""TEST HELPER: candidate lists as a centre has them: an XLSX made with openpyxl (numbers as numbers, times as
times, as Excel keeps them), and CSVs as Russian Excel writes them ("CSV (разделители — точка с запятой)":
semicolons, Windows-1251; "CSV UTF-8": semicolons, UTF-8 with a byte order mark). Shared by the server and
browser tests."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

HEADER = ["№ п/п", "Номер аккредитации", "Фамилия", "Имя", "Отчество", "Специальность", "Поток", "Время"]


def rows_for(numbers: Sequence[str], specialty: str = "34.02.01 Сестринское дело",
             streams: Sequence[tuple[str, str]] = (("1", "09:00"),)) -> list[list[Any]]:
    """A row per number, dealt to the streams in blocks: (stream label, start time) pairs."""
    per = -(-len(numbers) // len(streams))
    out = []
    for i, number in enumerate(numbers):
        label, time = streams[i // per]
        out.append([i + 1, number, f"Фамилия{i + 1}", "Анна", "Сергеевна", specialty, label, time])
    return out


def xlsx_bytes(header: list[str], rows: list[list[Any]], *, numeric_numbers: bool = True) -> bytes:
    """An XLSX as Excel keeps such a list: accreditation numbers as numbers, stream times as time cells."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Список"
    ws.append(header)
    for row in rows:
        cells: list[Any] = []
        for name, value in zip(header, row, strict=True):
            if name == "Номер аккредитации" and numeric_numbers and str(value).isdigit():
                value = int(value)
            elif name == "Время" and isinstance(value, str) and len(value) == 5 and value[2] == ":":
                value = dt.time(int(value[:2]), int(value[3:]))
            cells.append(value)
        ws.append(cells)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def csv_bytes(header: list[str], rows: list[list[Any]], encoding: str = "cp1251", bom: bool = False) -> bytes:
    """A CSV as Russian Excel writes it: semicolons, CRLF, Windows-1251 (or UTF-8 with a BOM)."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\r\n")
    w.writerow(header)
    for row in rows:
        w.writerow(row)
    data = buf.getvalue().encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data
