"""The candidate list reader on its own: XLSX as Excel keeps it, CSV as Russian Excel writes it, the header's words
guessing the columns, and every bad row named by its row number and column (candidate_list.py)."""

from __future__ import annotations

import io
import zipfile

import pytest

from review_server.candidate_list import (
    ListFileError,
    guess_mapping,
    mapping_problems,
    parse_rows,
    read_file,
    specialty_matches,
)
from scripts.harness.candidate_files import HEADER, csv_bytes, rows_for, xlsx_bytes

SPECIALTY = ("34.02.01", "Сестринское дело")
MAPPING = {"number": 1, "last_name": 2, "first_name": 3, "middle_name": 4, "specialty": 5, "stream": 6,
           "stream_time": 7, "full_name": None}


def test_xlsx_numbers_and_times_read_as_a_person_sees_them() -> None:
    sheet = read_file("list.xlsx", xlsx_bytes(HEADER, rows_for(["2611001", "2611002"])))
    assert sheet.header == HEADER and sheet.header_row == 1
    assert [(n, cells[1], cells[7]) for n, cells in sheet.rows] == [(2, "2611001", "09:00"), (3, "2611002", "09:00")]


@pytest.mark.parametrize(("encoding", "bom"), [("cp1251", False), ("utf-8", True), ("utf-8", False)])
def test_csv_in_the_encodings_excel_writes(encoding: str, bom: bool) -> None:
    sheet = read_file("list.csv", csv_bytes(HEADER, rows_for(["2611001"]), encoding, bom))
    assert sheet.header == HEADER  # no BOM left on the first header cell
    assert sheet.rows[0][1][2] == "Фамилия1"


def test_a_comma_separated_csv_and_blank_lines() -> None:
    data = "Номер,ФИО\r\n\r\n2611001,Иванова Мария Петровна\r\n,\r\n2611002,Петров Пётр\r\n".encode()
    sheet = read_file("x.csv", data)
    assert [n for n, _ in sheet.rows] == [3, 5]  # row numbers as the file has them; blank rows left out
    mapping = guess_mapping(sheet.header)
    assert mapping["number"] == 0 and mapping["full_name"] == 1
    listed, problems = parse_rows(sheet, mapping, SPECIALTY)
    assert problems == []
    assert listed[0].names == {"last_name": "Иванова", "first_name": "Мария", "middle_name": "Петровна"}
    assert listed[1].names == {"last_name": "Петров", "first_name": "Пётр", "middle_name": ""}


def test_guessing_from_russian_headers() -> None:
    guessed = guess_mapping(HEADER)
    assert {k: v for k, v in guessed.items() if v is not None} == {k: v for k, v in MAPPING.items() if v is not None}


def test_every_bad_row_is_named_with_its_column() -> None:
    rows = rows_for(["2611001", "2611002", "2611003", "2611004", "2611005"])
    rows[1][1] = ""  # empty number
    rows[2][1] = "2611001"  # duplicate
    rows[3][7] = "10:30"  # the same stream at another time
    rows[4][3] = "x" * 201
    sheet = read_file("l.xlsx", xlsx_bytes(HEADER, rows))
    listed, problems = parse_rows(sheet, MAPPING, SPECIALTY)
    assert listed == []  # nothing when anything is wrong
    assert [(p.row, p.column, p.key) for p in problems] == [
        (3, "B (Номер аккредитации)", "required"),
        (4, "B (Номер аккредитации)", "duplicate"),
        (5, "H (Время)", "stream_time"),
        (6, "D (Имя)", "too_long"),
    ]
    assert problems[1].params == {"value": "2611001", "other": 2}
    assert problems[2].params == {"stream": "1", "time": "09:00", "other": 2}


def test_mapping_problems_before_any_row() -> None:
    assert [p.key for p in mapping_problems({"number": None}, 3)] == ["map_required"]
    assert [(p.field, p.key, p.params) for p in mapping_problems({"number": 0, "stream": 0}, 3)] == [
        ("stream", "map_twice", {"other_field": "number"})]
    assert [p.key for p in mapping_problems({"number": 0, "full_name": 1, "last_name": 2}, 3)] == ["map_names_twice"]
    assert [p.key for p in mapping_problems({"number": 7}, 3)] == ["map_no_column"]


def test_specialty_cells_as_lists_write_them() -> None:
    for cell in ("Сестринское дело", "34.02.01", "34.02.01 Сестринское дело", "  сестринское   ДЕЛО "):
        assert specialty_matches(cell, *SPECIALTY), cell
    for cell in ("Лечебное дело", "31.02.01", ""):
        assert not specialty_matches(cell, *SPECIALTY), cell


def test_a_stream_without_a_time_and_a_time_without_a_stream() -> None:
    data = "Номер;Поток;Время\n2611001;утро;\n2611002;;11:00\n2611003;;9.30\n".encode()
    listed, problems = parse_rows(read_file("l.csv", data), {"number": 0, "stream": 1, "stream_time": 2}, SPECIALTY)
    assert problems == []
    assert [(x.stream, x.time) for x in listed] == [("утро", None), ("11:00", "11:00"), ("09:30", "09:30")]


@pytest.mark.parametrize(("name", "data", "key"), [
    ("l.csv", b"", "file_empty"),
    ("l.csv", "Номер\n".encode(), "no_rows"),
    ("l.xls", b"\xd0\xcf\x11\xe0 old excel", "file_type"),
    ("l.xlsx", b"PK\x03\x04 not really a zip", "file_unreadable"),
])
def test_files_that_are_not_lists(name: str, data: bytes, key: str) -> None:
    with pytest.raises(ListFileError) as err:
        read_file(name, data)
    assert err.value.key == key


def test_an_xlsx_that_inflates_too_far_is_refused_before_it_is_opened() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/sharedStrings.xml", b"\0" * (40 * 1024 * 1024))  # 40 MiB of zeros: ~40 KiB compressed
    assert len(buf.getvalue()) < 100_000
    with pytest.raises(ListFileError) as err:
        read_file("bomb.xlsx", buf.getvalue())
    assert err.value.key == "file_too_big"
