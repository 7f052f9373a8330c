"""The declarative config mechanism both programs use (media/configspec.py): one declaration per key gives the
loader, the error messages and the reference; the committed references are what the declarations make."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from media.configspec import ConfigError, ConfigSpec, derived, setting

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Row:
    name: str = setting("name", help="a row's name")
    weight: float = setting("weight", 1.0, "its weight", minimum=0)


@dataclass
class Toy:
    mode: str = setting("mode", "a", "one of two", choices=("a", "b"))
    level: int = setting("part.level", 3, "a level", minimum=1, maximum=9)
    where: Path | None = setting("part.where", None, "a folder")
    box: tuple[float, float] | None = setting("part.box", None, "two numbers")
    rows: list[Row] = setting("rows", help="rows", default_factory=list)
    secret: str | None = setting("secret", None, "never in the file", env="TOY_SECRET", secret=True)
    seen: str = derived("")


TOY = ConfigSpec(Toy, title="Toy", sections={"part": "a part"})


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Toy:
    path = tmp_path / "toy.toml"
    path.write_text(text, encoding="utf-8")
    return TOY.load(path, env or {})


def test_values_types_paths_rows_and_environment(tmp_path: Path) -> None:
    toy = load(tmp_path, 'mode = "b"\n[part]\nlevel = 9\nwhere = "sub"\nbox = [1, 2.5]\n'
                         '[[rows]]\nname = "x"\n[[rows]]\nname = "y"\nweight = 2\n', {"TOY_SECRET": "s"})
    assert (toy.mode, toy.level, toy.where, toy.box) == ("b", 9, tmp_path / "sub", (1.0, 2.5))
    assert [(r.name, r.weight) for r in toy.rows] == [("x", 1.0), ("y", 2.0)] and toy.secret == "s"
    assert TOY.load(None, {}) == Toy()


@pytest.mark.parametrize(("text", "key", "problem"), [
    ('mode = "c"\n', "mode", "must be one of 'a', 'b', not 'c'"),
    ("[part]\nlevel = 10\n", "part.level", "must be at most 9, got 10"),
    ("[part]\nlevel = 0\n", "part.level", "must be at least 1, got 0"),
    ("[part]\nlevel = 2.5\n", "part.level", "must be int, not float 2.5"),
    ("[part]\nlevel = true\n", "part.level", "must be int, not bool True"),
    ("[part]\nbox = [1]\n", "part.box", "must be a list of 2 numbers"),
    ("[part]\nwhere = \"\"\n", "part.where", "empty path"),
    ("[part]\nlevl = 1\n", "part.levl", "unknown key (known: box, level, where)"),
    ("part = 1\n", "part", "must be a table [part]"),
    ("prat = 1\n", "prat", "unknown key (known: mode, part, rows)"),
    ('secret = "x"\n', "secret", "secrets do not belong in the config file"),
    ("[[rows]]\nweight = 1\n", "rows[0].name", "missing: a row's name"),
    ('[[rows]]\nname = "x"\n[[rows]]\nname = "y"\nwieght = 1\n', "rows[1].wieght", "unknown key"),
    ("rows = 3\n", "rows", "must be one or more [[rows]] tables"),
    ("[part\n", "-", "not valid TOML"),
])
def test_mistakes_name_the_file_the_key_and_the_problem(tmp_path: Path, text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert (caught.value.file, caught.value.key) == (str(tmp_path / "toy.toml"), key)
    assert problem in caught.value.problem, caught.value.problem


def test_a_field_without_a_declaration_is_refused_at_import() -> None:
    @dataclass
    class Loose:
        port: int = 8080

    with pytest.raises(TypeError, match=r"Loose.port: declare it with setting"):
        ConfigSpec(Loose)


@pytest.mark.parametrize("module", ["station_agent.config", "review_server.config"])
def test_the_committed_reference_is_what_the_declarations_make(module: str) -> None:
    made = subprocess.run([sys.executable, "-m", module], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    committed = (ROOT / module.replace(".config", "/CONFIG.md")).read_text(encoding="utf-8")
    assert made == committed, f"remake it: python -m {module} > {module.replace('.config', '/CONFIG.md')}"
    for line in made.splitlines():  # every key has its type, default and meaning
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            assert len(cells) == 5 and all(cells[i] for i in (0, 1, 2, 4)), line
