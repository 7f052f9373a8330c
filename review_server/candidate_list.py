"""The centre's candidate list as it comes: an XLSX (Excel, LibreOffice) or a CSV as Russian Excel writes it
(semicolons, Windows-1251, or UTF-8 with a BOM). No web framework and no database here.

read_file gives the sheet (its header row and the data rows with their row numbers as the spreadsheet shows
them); guess_mapping proposes which column holds which field from the header's words; parse_rows reads every
row with the mapping the person chose and returns the candidates or every problem (row number, column, field,
what is wrong). A list with any problem is imported not at all (day_plan.import_candidates), so nothing is half
imported.

Problems carry a key and parameters, not a sentence: the page says them in its reader's language
(i18n "days" section, "err.<key>").
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass
from typing import Any

from .names import name_problem
from .validate import ACCRED_RE

FIELDS = ("number", "specialty", "stream", "stream_time", "full_name", "last_name", "first_name", "middle_name")
NAME_FIELDS = ("last_name", "first_name", "middle_name")
MAX_ROWS = 5000  # a centre's day is a few hundred candidates
MAX_COLUMNS = 60
MAX_CELL = 200
MAX_XLSX_INFLATED = 32 * 1024 * 1024  # what the XLSX's parts may inflate to, declared (a ZIP bomb is refused)
NUMBER_MAX = 40  # the station agent's candidate pattern allows 40 characters
_TIME = re.compile(r"([01]?[0-9]|2[0-3])[:.]([0-5][0-9])(?:[:.][0-5][0-9])?")
_SPACES = re.compile(r"\s+")

# Header words (lower case) that point to a field, first match wins: Russian lists first, then English.
HEADER_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("number", ("номер аккредит", "аккредитац", "номер", "№ аккр", "accreditation", "number")),
    ("specialty", ("специальн", "specialty")),
    ("stream", ("поток", "групп", "stream", "group")),
    ("stream_time", ("время", "начало", "time", "start")),
    ("full_name", ("фио", "ф.и.о", "full name")),
    ("last_name", ("фамилия", "last name", "surname")),
    ("first_name", ("имя", "first name")),
    ("middle_name", ("отчество", "middle name", "patronymic")),
)


class ListFileError(ValueError):
    """The file cannot be read as a candidate list at all (key for the page, parameters)."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(f"{key}: {params}")
        self.key, self.params = key, params


@dataclass(frozen=True)
class Sheet:
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (row number as the spreadsheet shows it, cells as text)
    header_row: int = 1

    def column_label(self, index: int) -> str:
        name = self.header[index] if index < len(self.header) else ""
        return f"{column_letter(index)} ({name})" if name else column_letter(index)


@dataclass(frozen=True)
class Problem:
    row: int  # 0: the mapping itself
    column: str  # "B (Номер)", or "" for the mapping
    field: str
    key: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Listed:
    row: int
    number: str
    stream: str
    time: str | None  # "HH:MM"
    names: dict[str, str] | None  # last_name, first_name, middle_name when a name column was mapped


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA (as spreadsheets name columns)."""
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


# -- reading ---------------------------------------------------------------------------------------------------


def read_file(name: str, data: bytes) -> Sheet:
    """An .xlsx or .csv file (told apart by its first bytes: an XLSX is a ZIP), as a Sheet."""
    if not data.strip():
        raise ListFileError("file_empty")
    if data[:4] == b"PK\x03\x04":
        return _sheet(_xlsx_rows(data))
    if name.lower().endswith((".xls", ".xlsx", ".ods")):
        raise ListFileError("file_type", name=name)
    return _sheet(_csv_rows(data))


def _xlsx_rows(data: bytes) -> list[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            inflated = sum(i.file_size for i in z.infolist())
    except zipfile.BadZipFile:
        raise ListFileError("file_unreadable") from None
    if inflated > MAX_XLSX_INFLATED:  # zipfile reads no more than each member's declared size
        raise ListFileError("file_too_big", mib=MAX_XLSX_INFLATED // (1024 * 1024))
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # openpyxl raises assorted errors on a broken workbook
        raise ListFileError("file_unreadable") from None
    try:
        ws = wb.worksheets[0]
        out = []
        for row in ws.iter_rows(max_col=MAX_COLUMNS):
            cells = [_cell_text(c.value) for c in row]
            number = next((c.row for c in row if getattr(c, "row", None)), None)
            if number is None:
                continue
            out.append((int(number), cells))
            if len(out) > MAX_ROWS + 1:
                raise ListFileError("too_many_rows", limit=MAX_ROWS)
        return out
    finally:
        wb.close()


def _cell_text(value: Any) -> str:
    """A cell as the person sees it: whole numbers without ".0", times as HH:MM."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.strftime("%H:%M") if value.date() == dt.date(1899, 12, 30) else value.isoformat(" ")
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    return str(value).strip()


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1251")  # Russian Excel's "CSV (разделители — точка с запятой)"; every byte decodes


def _csv_rows(data: bytes) -> list[tuple[int, list[str]]]:
    try:
        text = _decode(data)
    except UnicodeDecodeError:
        raise ListFileError("file_encoding") from None
    first = text.split("\n", 1)[0]
    delimiter = max((";", ",", "\t"), key=first.count) if any(d in first for d in ";,\t") else ";"
    out = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for i, cells in enumerate(reader, start=1):
            out.append((i, [c.strip() for c in cells[:MAX_COLUMNS]]))
            if len(out) > MAX_ROWS + 1:
                raise ListFileError("too_many_rows", limit=MAX_ROWS)
    except csv.Error as exc:
        raise ListFileError("file_csv", row=reader.line_num, problem=str(exc)) from None
    return out


def _sheet(rows: list[tuple[int, list[str]]]) -> Sheet:
    """The first non-empty row is the header; empty rows after it are left out."""
    filled = [(n, cells) for n, cells in rows if any(c for c in cells)]
    if not filled:
        raise ListFileError("file_empty")
    (header_row, header), data = filled[0], filled[1:]
    if not data:
        raise ListFileError("no_rows")
    width = max(max((i + 1 for i, c in enumerate(cells) if c), default=0) for _, cells in filled)
    return Sheet(_fit(header, width), [(n, _fit(cells, width)) for n, cells in data], header_row)


def _fit(cells: list[str], width: int) -> list[str]:
    """Cut to the sheet's used width (a spreadsheet's trailing empty columns), or padded to it."""
    return cells[:width] + [""] * (width - len(cells))


# -- mapping ---------------------------------------------------------------------------------------------------


def guess_mapping(header: list[str]) -> dict[str, int | None]:
    """Which column holds which field, from the header's words (a column serves one field)."""
    out: dict[str, int | None] = dict.fromkeys(FIELDS)
    taken: set[int] = set()
    for name, words in HEADER_WORDS:
        for i, text in enumerate(header):
            low = text.lower().replace("ё", "е")
            if i not in taken and any(w in low for w in words):
                out[name] = i
                taken.add(i)
                break
    if out["full_name"] is not None and out["last_name"] is not None:
        out["full_name"] = None  # separate name columns beat a guessed "ФИО"
    return out


def mapping_problems(mapping: dict[str, int | None], width: int) -> list[Problem]:
    """What is wrong with a mapping before any row is read."""
    out = []
    if mapping.get("number") is None:
        out.append(Problem(0, "", "number", "map_required"))
    seen: dict[int, str] = {}
    for name in FIELDS:
        col = mapping.get(name)
        if col is None:
            continue
        if not 0 <= col < width:
            out.append(Problem(0, "", name, "map_no_column"))
        elif col in seen:
            out.append(Problem(0, column_letter(col), name, "map_twice", {"other_field": seen[col]}))
        else:
            seen[col] = name
    if mapping.get("full_name") is not None and any(mapping.get(n) is not None for n in NAME_FIELDS):
        out.append(Problem(0, "", "full_name", "map_names_twice"))
    return out


# -- rows ------------------------------------------------------------------------------------------------------


def _time(value: str) -> str | None:
    m = _TIME.fullmatch(value)
    return f"{int(m.group(1)):02d}:{m.group(2)}" if m else None


def _norm(value: str) -> str:
    return _SPACES.sub(" ", value).strip().casefold().replace("ё", "е")


def specialty_matches(value: str, code: str, name: str) -> bool:
    """The list's specialty cell names the day's specialty: its code, its name, or "code name" as lists write it."""
    v = _norm(value)
    return v in (_norm(code), _norm(name)) or (bool(_norm(name)) and _norm(name) in v)


def parse_rows(sheet: Sheet, mapping: dict[str, int | None], specialty: tuple[str, str]) -> tuple[
        list[Listed], list[Problem]]:
    """Every row read with the mapping: (candidates, []) or ([], every problem). specialty: the day's (code, name)."""
    problems = mapping_problems(mapping, len(sheet.header))
    if problems:
        return [], problems
    out: list[Listed] = []
    first_row: dict[str, int] = {}
    stream_time: dict[str, tuple[str, int]] = {}

    def cell(cells: list[str], name: str) -> str:
        col = mapping.get(name)
        return _SPACES.sub(" ", cells[col]).strip() if col is not None else ""

    def problem(row: int, name: str, key: str, **params: Any) -> None:
        col = mapping.get(name)
        problems.append(Problem(row, sheet.column_label(col) if col is not None else "", name, key, params))

    for row, cells in sheet.rows:
        number = cell(cells, "number").replace(" ", "")
        if not number:
            problem(row, "number", "required")
            continue
        if len(number) > NUMBER_MAX or not ACCRED_RE.fullmatch(number):
            problem(row, "number", "number_format", value=number[:60], limit=NUMBER_MAX)
            continue
        if number in first_row:
            problem(row, "number", "duplicate", value=number, other=first_row[number])
            continue
        first_row[number] = row
        sp = cell(cells, "specialty")
        if mapping.get("specialty") is not None and not specialty_matches(sp, *specialty):
            problem(row, "specialty", "specialty_other", value=sp[:100], day=specialty[1] or specialty[0])
        time_text = cell(cells, "stream_time")
        time = _time(time_text) if time_text else None
        if time_text and time is None:
            problem(row, "stream_time", "time_format", value=time_text[:40])
        stream = cell(cells, "stream")[:64] or (time or "")
        if time is not None:
            earlier = stream_time.setdefault(stream, (time, row))
            if earlier[0] != time:
                problem(row, "stream_time", "stream_time", stream=stream, time=earlier[0], other=earlier[1])
        names = _names(cells, mapping, cell)
        for name, value in (names or {}).items():
            if len(value) > MAX_CELL:
                problem(row, name if mapping.get(name) is not None else "full_name", "too_long", limit=MAX_CELL)
            elif (why := name_problem(value)) is not None:
                problem(row, name if mapping.get(name) is not None else "full_name", "name_chars", why=why)
        out.append(Listed(row, number, stream, time, names))
    return ([], problems) if problems else (out, [])


def _names(cells: list[str], mapping: dict[str, int | None], cell: Any) -> dict[str, str] | None:
    if mapping.get("full_name") is not None:
        parts = cell(cells, "full_name").split(" ", 2)
        parts += [""] * (3 - len(parts))
        return dict(zip(NAME_FIELDS, parts, strict=True))
    if any(mapping.get(n) is not None for n in NAME_FIELDS):
        return {n: cell(cells, n) for n in NAME_FIELDS}
    return None
