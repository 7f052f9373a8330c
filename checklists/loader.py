"""Load checklist definitions from YAML; every error names the file, the line and the field.

A file either loads completely or raises ChecklistError listing every problem found (nothing half-loads).
The format is described in checklists/FORMAT.md; the shipped stations live in checklists/data/.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .model import (
    FORM_FIELDS,
    PRESENTATIONS,
    Checklist,
    ChecklistItem,
    FormHeader,
    RatingScale,
    TimeLimits,
)

DATA_DIR = Path(__file__).resolve().parent / "data"
MAX_NODES = 20_000  # far above any real checklist (the shipped ones have 150 to 250)
MAX_DEPTH = 50
MAX_FILE_BYTES = 1024 * 1024  # a real checklist is a few kilobytes; PyYAML composes about 50 000 nodes a second

TOP_KEYS = {
    "specialty": True,  # key: required?
    "title": True,
    "version": True,
    "items": True,
    "station": False,
    "time_limits": False,
    "pass_threshold_percent": False,
    "rating": False,
    "form": False,
}
ITEM_KEYS = {
    "number": True,
    "action": True,
    "presentation": False,
    "done_criteria": False,
    "phrase": False,
    "critical": False,
}
TIME_KEYS = {"reading_s": False, "performing_s": False, "changeover_s": False}
RATING_KEYS = {"min": True, "max": True, "borderline": True, "labels": False}
FORM_KEYS = {"title": False, "stage": False, "fields": False}


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class ChecklistError(ValueError):
    """A checklist file that does not load; str() gives one "file:line: field: message" line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.field))
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def file(self) -> str:
        return self.problems[0].file

    @property
    def line(self) -> int:
        return self.problems[0].line

    @property
    def field(self) -> str:
        return self.problems[0].field


class _Reader:
    """Turns the YAML node tree into plain data, remembering the line of each path; collects problems."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: dict[str, int] = {}
        self.problems: list[Problem] = []
        self._constructor = SafeConstructor()
        self.nodes = 0  # nodes read so far, aliases counted each time they are expanded

    def problem(self, path: str, message: str, line: int | None = None) -> None:
        if line is None:
            probe = path
            while probe and probe not in self.lines:
                probe = probe.rsplit(".", 1)[0] if "." in probe else probe.rsplit("[", 1)[0] if "[" in probe else ""
            line = self.lines.get(probe, 1)
        self.problems.append(Problem(self.name, line, path or "(file)", message))

    def data(self, node: Node, path: str, line: int | None = None) -> Any:
        self.lines[path] = line or node.start_mark.line + 1  # a mapping's entry is found on its key's line
        # Aliases are expanded: a self-referencing one, or aliases of aliases ("billion laughs"), would never end.
        self.nodes += 1
        if self.nodes > MAX_NODES or path.count(".") + path.count("[") > MAX_DEPTH:
            raise ChecklistError([Problem(self.name, self.lines[path], path, "too large or nested too deeply")])
        if isinstance(node, MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.scalar(key_node, path) if isinstance(key_node, ScalarNode) else None
                if not isinstance(key, str | int) or isinstance(key, bool):
                    self.problem(path, f"key {key!r} is not a name", key_node.start_mark.line + 1)
                    continue
                child = f"{path}.{key}" if path else str(key)
                if key in out:
                    self.problem(child, "duplicate key", key_node.start_mark.line + 1)
                    continue
                out[key] = self.data(value_node, child, key_node.start_mark.line + 1)
            return out
        if isinstance(node, SequenceNode):
            return [self.data(v, f"{path}[{i}]") for i, v in enumerate(node.value)]
        return self.scalar(node, path)

    def scalar(self, node: Node, path: str) -> Any:
        """A scalar's value; a bad tag or an impossible value (`!foo`, 2026-13-45, !!int x) is a problem, no crash."""
        try:
            return self._constructor.construct_object(node)
        except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise anything on a bad tagged scalar
            self.problem(path or "(file)", f"cannot read {node.value!r:.60}: {str(exc).splitlines()[0]}",
                         node.start_mark.line + 1)
            return None

    # field checks: each returns the value or None after recording a problem

    def keys(self, value: Any, path: str, allowed: dict[str, bool]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, not {_kind(value)}")
            return None
        for key in value:
            if key not in allowed:
                child = f"{path}.{key}" if path else str(key)
                self.problem(child, f"unknown key (allowed: {', '.join(allowed)})")
        for key, required in allowed.items():
            if required and key not in value:
                self.problem(f"{path}.{key}" if path else key, "missing")
        return value

    def text(self, value: Any, path: str, *, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            hint = " (quote it)" if isinstance(value, int | float) and not isinstance(value, bool) else ""
            self.problem(path, f"must be text, not {_kind(value)}{hint}")
            return None
        if not value.strip():
            self.problem(path, "empty")
            return None
        return " ".join(value.split())

    def integer(self, value: Any, path: str, *, minimum: int | None = None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"must be a whole number, not {_kind(value)}")
            return None
        if minimum is not None and value < minimum:
            self.problem(path, f"must be at least {minimum}, got {value}")
            return None
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__
    )


class _TooLarge(Exception):
    pass


class _CountingLoader(yaml.SafeLoader):
    """Counts the nodes while it composes them, so that a huge file stops at MAX_NODES instead of being built
    whole first (a megabyte of `[0,0,0,...]` is half a million nodes, seconds of CPU and hundreds of MB)."""

    nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLarge
        return super().compose_node(parent, index)


def parse_checklist(text: str, name: str = "<checklist>") -> Checklist:
    """Parse and validate YAML text; `name` is what error messages call the file."""
    reader = _Reader(name)
    if len(text) > MAX_FILE_BYTES:
        raise ChecklistError([Problem(name, 1, "(file)", f"larger than {MAX_FILE_BYTES // 1024} KiB: not a checklist")])
    try:
        node = yaml.compose(text, Loader=_CountingLoader)
    except _TooLarge:
        too_many = f"more than {MAX_NODES} YAML nodes: not a checklist"
        raise ChecklistError([Problem(name, 1, "(yaml)", too_many)]) from None
    except RecursionError:
        raise ChecklistError([Problem(name, 1, "(yaml)", "not valid YAML: nested too deeply")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise ChecklistError([Problem(name, line, "(yaml)", f"not valid YAML: {problem}")]) from None
    if node is None:
        raise ChecklistError([Problem(name, 1, "(file)", "empty: no checklist in it")])
    raw = reader.data(node, "")
    checklist = _build(reader, raw)
    if reader.problems or checklist is None:
        raise ChecklistError(reader.problems)
    return checklist


def load_checklist(path: str | Path) -> Checklist:
    """Load one checklist file; raises ChecklistError naming the file, line and field."""
    path = Path(path)
    name = str(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)  # never more: the file may be anything
    except OSError as exc:
        raise ChecklistError([Problem(name, 0, "(file)", f"cannot read: {exc.strerror or exc}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ChecklistError([Problem(name, 1, "(file)", f"larger than {MAX_FILE_BYTES // 1024} KiB: not a checklist")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ChecklistError([Problem(name, line, "(file)", "not UTF-8 text")]) from None
    checklist = parse_checklist(text, name)
    object.__setattr__(checklist, "source", name)
    return checklist


def builtin_checklists() -> list[Checklist]:
    """The stations shipped with the program (checklists/data/*.yaml), in file-name order."""
    return [load_checklist(p) for p in sorted(DATA_DIR.glob("*.yaml"))]


def _build(r: _Reader, raw: Any) -> Checklist | None:
    top = r.keys(raw, "", TOP_KEYS)
    if top is None:
        return None
    specialty = r.text(top.get("specialty"), "specialty") if "specialty" in top else None
    title = r.text(top.get("title"), "title") if "title" in top else None
    version = r.text(top.get("version"), "version") if "version" in top else None
    station = r.integer(top["station"], "station", minimum=1) if "station" in top else None

    threshold = 70.0
    if "pass_threshold_percent" in top:
        value = top["pass_threshold_percent"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            r.problem("pass_threshold_percent", f"must be a number, not {_kind(value)}")
        elif not 0 < value <= 100:
            r.problem("pass_threshold_percent", f"must be above 0 and at most 100, got {value}")
        else:
            threshold = float(value)

    limits = TimeLimits()
    if "time_limits" in top and (tl := r.keys(top["time_limits"], "time_limits", TIME_KEYS)) is not None:
        values = {k: r.integer(v, f"time_limits.{k}", minimum=1) for k, v in tl.items() if k in TIME_KEYS}
        limits = TimeLimits(**{k: v for k, v in values.items() if v is not None})

    rating = _rating(r, top["rating"]) if "rating" in top else None
    form = _form(r, top["form"]) if "form" in top else FormHeader()
    items = _items(r, top["items"]) if "items" in top else []

    if r.problems or None in (specialty, title, version):
        return None
    assert specialty and title and version
    return Checklist(
        specialty=specialty,
        title=title,
        version=version,
        items=tuple(items),
        station=station,
        time_limits=limits,
        threshold_percent=threshold,
        rating=rating,
        form=form,
    )


def _items(r: _Reader, raw: Any) -> list[ChecklistItem]:
    if not isinstance(raw, list):
        r.problem("items", f"must be a list, not {_kind(raw)}")
        return []
    if not raw:
        r.problem("items", "empty: a checklist needs at least one item")
        return []
    items: list[ChecklistItem] = []
    seen: dict[int, str] = {}
    for i, entry in enumerate(raw):
        path = f"items[{i}]"
        d = r.keys(entry, path, ITEM_KEYS)
        if d is None:
            continue
        number = r.integer(d["number"], f"{path}.number", minimum=1) if "number" in d else None
        if number is not None:
            if number in seen:
                r.problem(f"{path}.number", f"duplicate item number {number} (also {seen[number]})")
            elif items and number < items[-1].number:
                r.problem(f"{path}.number", f"item {number} comes after item {items[-1].number}: keep them in order")
            seen.setdefault(number, f"line {r.lines.get(f'{path}.number', 0)}")
        action = r.text(d["action"], f"{path}.action") if "action" in d else None
        presentation = d.get("presentation", "do")
        if not isinstance(presentation, str) or presentation not in PRESENTATIONS:
            r.problem(f"{path}.presentation", f"must be one of {', '.join(PRESENTATIONS)}, got {presentation!r}")
        criteria = r.text(d.get("done_criteria"), f"{path}.done_criteria", optional=True)
        phrase = r.text(d.get("phrase"), f"{path}.phrase", optional=True)
        critical = d.get("critical", False)
        if not isinstance(critical, bool):
            r.problem(f"{path}.critical", f"must be true or false, not {_kind(critical)}")
        if number is not None and action is not None and not r.problems:
            items.append(ChecklistItem(number, action, presentation, criteria, phrase, critical))
    return items


def _rating(r: _Reader, raw: Any) -> RatingScale | None:
    d = r.keys(raw, "rating", RATING_KEYS)
    if d is None or any(k not in d for k in ("min", "max", "borderline")):
        return None
    low = r.integer(d["min"], "rating.min")
    high = r.integer(d["max"], "rating.max")
    mid = r.integer(d["borderline"], "rating.borderline")
    if low is None or high is None or mid is None:
        return None
    if low >= high:
        r.problem("rating.max", f"must be above rating.min ({low}), got {high}")
        return None
    if not low <= mid <= high:
        r.problem("rating.borderline", f"must be between {low} and {high}, got {mid}")
        return None
    labels: dict[int, str] = {}
    raw_labels = d.get("labels", {})
    if not isinstance(raw_labels, dict):
        r.problem("rating.labels", f"must be a mapping, not {_kind(raw_labels)}")
        return None
    for key, label in raw_labels.items():
        path = f"rating.labels.{key}"
        if isinstance(key, bool) or not isinstance(key, int) or not low <= key <= high:
            r.problem(path, f"must be a rating between {low} and {high}")
            continue
        text = r.text(label, path)
        if text is not None:
            labels[key] = text
    return RatingScale(low, high, mid, labels)


def _form(r: _Reader, raw: Any) -> FormHeader:
    d = r.keys(raw, "form", FORM_KEYS)
    if d is None:
        return FormHeader()
    default = FormHeader()
    title = r.text(d["title"], "form.title") if "title" in d else default.title
    stage = r.text(d["stage"], "form.stage") if "stage" in d else default.stage
    fields = default.fields
    if "fields" in d:
        raw_fields = d["fields"]
        if not isinstance(raw_fields, list) or not raw_fields:
            r.problem("form.fields", "must be a non-empty list of header fields")
        else:
            for i, key in enumerate(raw_fields):
                if not isinstance(key, str) or key not in FORM_FIELDS:
                    r.problem(f"form.fields[{i}]", f"unknown header field {key!r} (known: {', '.join(FORM_FIELDS)})")
            if not r.problems and len(set(raw_fields)) != len(raw_fields):
                r.problem("form.fields", "a header field is listed twice")
            fields = tuple(raw_fields)
    return FormHeader(title or default.title, stage or default.stage, fields)
