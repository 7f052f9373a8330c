"""Declarative TOML configuration, shared by both programs (the station agent and the review server), hence here.

A program's configuration is one dataclass. Each field that the file may set is declared once, with
`setting(key, default, help, limits...)`: its type is the field's annotation, its TOML address the key ("port",
"video.width"); a field filled by the program from other settings or the environment is `derived(default)`.
`ConfigSpec` reads the declarations and gives the loader (types, limits, unknown sections and keys, relative paths,
environment overrides, secrets kept out of the file), the error messages (`ConfigError`: file, key, what is wrong)
and the Markdown reference of every key (`markdown()`, committed next to the program and checked by a test).

Types understood: str, int, float, bool, Path, `X | None`, `tuple[float, ...]` of a fixed length (a TOML array of
numbers), `list[str]` (a TOML array of strings) and `list[D]` where D is a dataclass of settings (an array of
tables, `[[cameras]]`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")
_META = "osce_setting"


class ConfigError(ValueError):
    """A configuration problem; the message names the file, the key and what is wrong."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        super().__init__(f"{file}: {key}: {problem}")


@dataclass(frozen=True)
class Setting:
    key: str  # the TOML address: "port", "video.width"; inside an array of tables, the key of one row
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None  # a string must match it; `pattern_help` says what it means
    pattern_help: str = ""
    must_exist: bool = False  # a path: the file must exist
    env: str | None = None  # this environment variable, when set, overrides the file
    secret: bool = False  # never in the file: from `env` (or the program's own secrets file) only
    shown_default: str | None = None  # the default as the reference shows it (when the value is machine-specific)


def setting(key: str, default: Any = MISSING, help: str = "", *, default_factory: Callable[[], Any] | Any = MISSING,
            minimum: float | None = None, maximum: float | None = None, choices: tuple[str, ...] = (),
            pattern: str | None = None, pattern_help: str = "", must_exist: bool = False, env: str | None = None,
            secret: bool = False, shown_default: str | None = None) -> Any:
    """A dataclass field that the TOML file sets at `key`; without a default (and factory) the key is required."""
    meta = Setting(key, help, minimum, maximum, choices, re.compile(pattern) if pattern else None, pattern_help,
                   must_exist, env, secret, shown_default)
    return field(default=default, default_factory=default_factory, metadata={_META: meta})


def derived(default: Any = MISSING, *, default_factory: Callable[[], Any] | Any = MISSING, repr: bool = True) -> Any:
    """A dataclass field the program fills itself (from other settings, a secrets file); never read from the file."""
    return field(default=default, default_factory=default_factory, repr=repr, metadata={_META: None})


@dataclass(frozen=True)
class _Key:
    name: str  # the dataclass field
    setting: Setting
    kind: type  # str, int, float, bool, Path, tuple (numbers) or a dataclass (array of tables)
    optional: bool
    length: int = 0  # tuple: how many numbers
    rows: ConfigSpec[Any] | None = None  # array of tables: the spec of one row

    @property
    def section(self) -> str:
        return self.setting.key.rpartition(".")[0]

    @property
    def leaf(self) -> str:
        return self.setting.key.rpartition(".")[2]


@dataclass
class Source:
    """Where the values come from: given to the program's `finish` step, which checks what spans several keys."""

    file: str
    base: Path  # relative paths are taken from here (the file's folder)
    given: set[str]  # the keys the file set
    env: Mapping[str, str]

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, key, problem)


class ConfigSpec(Generic[C]):
    """The declarations of one configuration dataclass, and what is made from them."""

    def __init__(self, cls: type[C], *, title: str = "", intro: str = "", sections: Mapping[str, str] | None = None,
                 finish: Callable[[C, Source], None] | None = None) -> None:
        self.cls, self.title, self.intro, self.finish = cls, title, intro, finish
        self.sections = dict(sections or {})
        hints = typing.get_type_hints(cls)
        self.keys: list[_Key] = []
        for f in dataclasses.fields(cls):
            if _META not in f.metadata:
                raise TypeError(f"{cls.__name__}.{f.name}: declare it with setting(...) or derived(...)")
            if f.metadata[_META] is not None:
                self.keys.append(_key(f.name, f.metadata[_META], hints[f.name]))
        for section in {k.section for k in self.keys if k.section}:
            if section not in self.sections:
                raise TypeError(f"{cls.__name__}: section [{section}] has no help text")

    def by_key(self) -> dict[str, _Key]:
        return {k.setting.key: k for k in self.keys}

    def section_keys(self) -> dict[str, set[str]]:
        """Each table ("" for the top level) and the keys it may hold."""
        out: dict[str, set[str]] = {}
        for k in self.keys:
            if k.rows is not None:
                out[k.setting.key] = {r.setting.key for r in k.rows.keys}
            elif not k.setting.secret:
                out.setdefault(k.section, set()).add(k.leaf)
        return out

    # --- loading --------------------------------------------------------------------------------------------

    def load(self, path: Path | str | None, environ: Mapping[str, str] | None = None) -> C:
        """Read `path` (None: the defaults) over the defaults; raises ConfigError naming the file, key and problem."""
        env = os.environ if environ is None else environ
        if path is None:
            return self._build({}, Source("<defaults>", Path.cwd(), set(), env), "")
        file = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(file, "-", "file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(file, "-", f"cannot read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(file, "-", f"not valid TOML: {exc}") from None
        return self._build(data, Source(file, Path(path).resolve().parent, set(), env), "")

    def _build(self, data: dict[str, Any], src: Source, prefix: str) -> C:
        self._check_names(data, src, prefix)
        values: dict[str, Any] = {}
        for k in self.keys:
            where = prefix + k.setting.key
            raw = _lookup(data, k.setting.key)
            if k.setting.env and src.env.get(k.setting.env):
                values[k.name] = src.env[k.setting.env]
            elif raw is not _ABSENT and not (_required(self.cls, k.name) and isinstance(raw, str) and not raw.strip()):
                src.given.add(where)
                values[k.name] = self._value(k, raw, src, where)
            elif _required(self.cls, k.name):
                raise src.error(where, f"missing: {k.setting.help}")
        cfg = self.cls(**values)
        if self.finish is not None:
            self.finish(cfg, src)
        return cfg

    def _check_names(self, data: dict[str, Any], src: Source, prefix: str) -> None:
        known = self.section_keys()
        top = known.pop("", set())
        arrays = {k.setting.key for k in self.keys if k.rows is not None}
        secrets = {k.setting.key for k in self.keys if k.setting.secret}
        for name, value in data.items():
            where = prefix + name
            if name in secrets:
                raise src.error(where, "secrets do not belong in the config file; use the environment")
            if name in top or name in arrays:
                continue  # checked with its value
            if name not in known:
                listed = ", ".join(sorted(top) + sorted(known))
                raise src.error(where, f"unknown {'key' if top else 'section'} (known: {listed})")
            if not isinstance(value, dict):
                raise src.error(where, f"must be a table [{name}], not {type(value).__name__}")
            for key in value:
                if key not in known[name]:
                    raise src.error(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(known[name]))})")

    def _value(self, k: _Key, raw: Any, src: Source, where: str) -> Any:
        s = k.setting
        if k.rows is not None:
            if not isinstance(raw, list) or not raw or not all(isinstance(r, dict) for r in raw):
                raise src.error(where, f"must be one or more [[{s.key}]] tables")
            return [k.rows._build(row, src, f"{where}[{i}].") for i, row in enumerate(raw)]
        value = _convert(k, raw, src, where)
        if s.minimum is not None and value < s.minimum:
            raise src.error(where, f"must be at least {s.minimum:g}, got {value!r}")
        if s.maximum is not None and value > s.maximum:
            raise src.error(where, f"must be at most {s.maximum:g}, got {value!r}")
        if s.choices and value not in s.choices:
            raise src.error(where, f"must be one of {', '.join(map(repr, s.choices))}, not {value!r}")
        if s.pattern is not None and not s.pattern.match(value):
            raise src.error(where, f"must be {s.pattern_help}, not {value!r}")
        return value

    # --- the reference --------------------------------------------------------------------------------------

    def markdown(self, regenerate: str) -> str:
        """The reference of every key, as committed next to the program (`regenerate` says how to remake it)."""
        lines = [f"# {self.title}", "", self.intro.strip(), "",
                 f"Made from the declarations in the code by `{regenerate}`; a test checks that it is current.", ""]
        tables: dict[str, list[_Key]] = {}
        for k in self.keys:
            tables.setdefault(k.setting.key if k.rows is not None else k.section, []).append(k)
        for name, keys in tables.items():
            rows = keys[0].rows
            if rows is not None:
                default = _shown(keys[0], _field(self.cls, keys[0].name))
                lines += [f"## `[[{name}]]`", "", f"{keys[0].setting.help} Default: {default}.", ""]
                lines += _table(rows.keys, rows.cls)
            else:
                lines += [f"## `[{name}]`", "", self.sections[name], ""] if name else []
                lines += _table(keys, self.cls)
        return "\n".join(lines)


_ABSENT = object()


def _lookup(data: dict[str, Any], key: str) -> Any:
    section, _, leaf = key.rpartition(".")
    table = data.get(section, {}) if section else data
    return table.get(leaf, _ABSENT) if isinstance(table, dict) else _ABSENT


def _is_rows(spec: ConfigSpec[Any], name: str) -> bool:
    return any(k.rows is not None and k.setting.key == name for k in spec.keys)


def _field(cls: type, name: str) -> dataclasses.Field[Any]:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def _required(cls: type, name: str) -> bool:
    f = _field(cls, name)
    return f.default is MISSING and f.default_factory is MISSING


def _key(name: str, setting: Setting, hint: Any) -> _Key:
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    origin = typing.get_origin(hint)
    if hint in (str, int, float, bool, Path):
        return _Key(name, setting, hint, optional)
    if origin is tuple and all(a is float for a in typing.get_args(hint)):
        return _Key(name, setting, tuple, optional, length=len(typing.get_args(hint)))
    if origin is list and typing.get_args(hint) == (str,):
        return _Key(name, setting, list, optional)
    if origin is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        row = typing.get_args(hint)[0]
        return _Key(name, setting, row, optional, rows=ConfigSpec(row))
    raise TypeError(f"{name}: no TOML reading for the type {hint!r}")


_KIND_NAMES: dict[type, str] = {str: "str", int: "int", float: "float", bool: "bool", Path: "a path string"}


def _convert(k: _Key, raw: Any, src: Source, where: str) -> Any:
    numeric = isinstance(raw, int | float) and not isinstance(raw, bool)
    if k.kind is tuple:
        if not (isinstance(raw, list) and len(raw) == k.length
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)):
            raise src.error(where, f"must be a list of {k.length} numbers, not {raw!r}")
        return tuple(float(v) for v in raw)
    if k.kind is list:
        if not (isinstance(raw, list) and all(isinstance(v, str) for v in raw)):
            raise src.error(where, f"must be a list of strings, not {raw!r}")
        return list(raw)
    if k.kind is float and numeric:
        if not math.isfinite(raw):
            raise src.error(where, f"must be a finite number, got {raw!r}")
        return float(raw)
    if k.kind is int:
        ok = isinstance(raw, int) and not isinstance(raw, bool)
    else:
        ok = isinstance(raw, str if k.kind is Path else k.kind)
    if not ok:
        raise src.error(where, f"must be {_KIND_NAMES[k.kind]}, not {type(raw).__name__} {raw!r}")
    if k.kind is not Path:
        return raw
    if not raw.strip():
        raise src.error(where, "empty path")
    if "\0" in raw:
        raise src.error(where, "a path cannot contain a NUL character")
    try:
        path = Path(raw).expanduser()
    except RuntimeError:  # ~user of an unknown user
        raise src.error(where, f"cannot expand '~' in {raw!r}") from None
    path = path if path.is_absolute() else src.base / path
    if k.setting.must_exist and not path.is_file():
        raise src.error(where, f"no such file: {path}")
    return path


_TYPE_DOCS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "true/false", Path: "path",
                               list: "list of strings"}


def _table(keys: list[_Key], cls: type) -> list[str]:
    return ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|",
            *(_row(k, _field(cls, k.name)) for k in keys), ""]


def _row(k: _Key, f: dataclasses.Field[Any]) -> str:
    s = k.setting
    kind = f"[{k.length} numbers]" if k.kind is tuple else _TYPE_DOCS[k.kind]
    allowed = []
    if s.minimum is not None:
        allowed.append(f"≥ {s.minimum:g}")
    if s.maximum is not None:
        allowed.append(f"≤ {s.maximum:g}")
    if s.choices:
        allowed.append(" or ".join(f"`{c}`" for c in s.choices))
    if s.pattern_help:
        allowed.append(s.pattern_help)
    if s.must_exist:
        allowed.append("an existing file")
    meaning = s.help
    if s.secret:
        meaning += f" Never in the file: from `${s.env}`." if s.env else " Never in the file."
    elif s.env:
        meaning += f" `${s.env}`, when set, overrides the file."
    cells = [f"`{k.leaf}`", kind, _shown(k, f), "; ".join(allowed), meaning]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _shown(k: _Key, f: dataclasses.Field[Any]) -> str:
    if k.setting.shown_default is not None:
        return k.setting.shown_default
    if f.default is MISSING and f.default_factory is MISSING:
        return "required"
    value = f.default if f.default_factory is MISSING else f.default_factory()
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str | Path):
        return f'`"{value}"`'
    return f"`{value!r}`"
