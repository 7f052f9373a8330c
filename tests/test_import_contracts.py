"""The import contracts of the house (/work/shared/architecture.md, README): dependencies point one way.

- media and checklists import no program (station_agent, review_server, the osce CLI);
- station_agent and review_server never import each other;
- no import cycle inside a package, counting imports inside functions too (a cycle hidden in a function is
  still a cycle: the modules cannot be understood, tested or loaded one without the other).

Read from the source with `ast`, so a lazy or conditional import counts the same as one at the top.
`python -m tests.test_import_contracts` prints every package's cycles (the figure quoted in reports).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("media", "checklists", "station_agent", "review_server")
PROGRAMS = ("station_agent", "review_server", "osce_cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> Iterator[tuple[str, int]]:
    """(module imported, line) for every import in the file, relative ones resolved against the file's package.
    `from x import y` yields x and x.y (y may be a module); `from . import y` yields only the package's y, as
    import-linter counts it (every submodule needs its package's __init__ loaded, which is no dependency)."""
    package = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[: len(package) - (node.level - 1)]
                base = ".".join([*up, *([node.module] if node.module else [])])
            if node.module is not None:
                yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    files = sorted((ROOT / package).rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): {m for m, _ in imported(p) if m in modules and m != module_name(p)} for p in files}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def crossings(package: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name, line in imported(path):
            if name.split(".")[0] in forbidden:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return sorted(set(out))


def test_media_and_checklists_import_no_program() -> None:
    assert crossings("media", PROGRAMS) == []
    assert crossings("checklists", PROGRAMS) == []


def test_the_two_programs_never_import_each_other() -> None:
    assert crossings("station_agent", ("review_server",)) == []
    assert crossings("review_server", ("station_agent",)) == []


def test_no_import_cycle_inside_review_server() -> None:
    assert cycles(graph("review_server")) == []


def test_no_import_cycle_inside_station_agent() -> None:
    assert cycles(graph("station_agent")) == []


def test_no_import_cycle_inside_media_or_checklists() -> None:
    assert cycles(graph("media")) == [] and cycles(graph("checklists")) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check itself can fail: a two-module and a three-module cycle beside an acyclic module."""
    g = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert cycles(g) == [["a", "b"], ["c", "d", "e"]]


if __name__ == "__main__":
    for pkg in PACKAGES:
        found = cycles(graph(pkg))
        print(f"{pkg}: {len(found)} import cycle(s)", *(f"  {len(c)} modules: {' '.join(c)}" for c in found),
              sep="\n")
