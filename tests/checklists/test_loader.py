"""Checklist definitions: the shipped stations load, content hashes, and malformed files fail precisely."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import osce_cli
from checklists.loader import DATA_DIR, ChecklistError, builtin_checklists, load_checklist, parse_checklist

MALFORMED = Path(__file__).parent / "malformed"
MALFORMED_FILES = sorted(MALFORMED.glob("*.yaml"))


def expected_errors(path: Path) -> list[str]:
    expects = re.findall(r"^# expect: (.+)$", path.read_text(encoding="utf-8"), flags=re.M)
    return [f"{path}:{e}" for e in expects]


def test_there_are_at_least_fifteen_malformed_files() -> None:
    assert len(MALFORMED_FILES) >= 15
    for path in MALFORMED_FILES:
        assert expected_errors(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", MALFORMED_FILES, ids=[p.stem for p in MALFORMED_FILES])
def test_malformed_file_fails_naming_file_line_and_field(path: Path) -> None:
    with pytest.raises(ChecklistError) as info:
        load_checklist(path)
    assert str(info.value).splitlines() == expected_errors(path)
    assert info.value.file == str(path)
    assert f"{info.value.file}:{info.value.line}: {info.value.field}: " in str(info.value)


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ChecklistError, match=r"^.*missing\.yaml:0: \(file\): cannot read: "):
        load_checklist(tmp_path / "missing.yaml")
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes(b"specialty: x\ntitle: \xe9t\xe9\n")
    with pytest.raises(ChecklistError, match=r"latin1\.yaml:2: \(file\): not UTF-8 text$"):
        load_checklist(latin)


def test_shipped_nursing_stations() -> None:
    checklists = builtin_checklists()
    assert len(checklists) == 3
    assert {c.specialty for c in checklists} == {"Сестринское дело"}
    titles = [c.title for c in checklists]
    assert any("сердечно-лёгочная реанимация" in t for t in titles)
    assert [c.station for c in checklists] == [1, 2, 3]
    for c in checklists:
        assert c.threshold_percent == 70.0
        assert c.time_limits.reading_s == 30 and c.time_limits.performing_s == 510
        assert len(c.items) >= 15
        assert [i.number for i in c.items] == list(range(1, len(c.items) + 1))
        assert all(re.search("[а-яё]", i.action) for i in c.items)  # Russian text
        assert not any(i.critical for i in c.items)  # the published rule is the 70 % threshold alone
        assert c.rating is not None and c.rating.borderline == 3
        assert c.form.labelled()[2] == ("candidate_number", "Номер аккредитуемого")
        assert re.fullmatch("[0-9a-f]{64}", c.content_hash)
    assert len({c.content_hash for c in checklists}) == 3


MINIMAL = """\
specialty: Сестринское дело
title: Измерение давления
version: "1"
items:
  - number: 1
    action: Поздороваться
    critical: true
"""


def test_defaults_and_fields() -> None:
    c = parse_checklist(MINIMAL)
    assert c.threshold_percent == 70.0
    assert c.rating is None
    assert c.station is None
    assert c.items[0].critical is True
    assert c.items[0].presentation == "do"
    assert c.item(1).action == "Поздороваться"
    with pytest.raises(KeyError):
        c.item(2)


def test_hash_covers_content_not_layout() -> None:
    base = parse_checklist(MINIMAL).content_hash
    reformatted = "# a comment\n" + MINIMAL.replace('version: "1"', "version: '1'   # quoted differently")
    assert parse_checklist(reformatted).content_hash == base
    defaults_spelled_out = MINIMAL + "pass_threshold_percent: 70\ntime_limits: {reading_s: 30}\n"
    assert parse_checklist(defaults_spelled_out).content_hash == base
    assert parse_checklist(MINIMAL.replace("Поздороваться", "Представиться")).content_hash != base
    assert parse_checklist(MINIMAL.replace("critical: true", "critical: false")).content_hash != base
    assert parse_checklist(MINIMAL + "pass_threshold_percent: 80\n").content_hash != base


def test_cli_validate(capsys: pytest.CaptureFixture[str]) -> None:
    good = sorted(str(p) for p in DATA_DIR.glob("*.yaml"))
    assert osce_cli.main(["checklist", "validate", *good]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok: ") == 3
    bad = str(MALFORMED / "empty_action.yaml")
    assert osce_cli.main(["checklist", "validate", good[0], bad]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == f"{bad}:9: items[1].action: empty"
    assert captured.out.count(": ok: ") == 1
