"""Reading and checking request input. Every refusal names the field (JSON path) that is wrong.

Identifiers (logins, codes, accreditation numbers, hashes, ids) must match strict patterns, so
path- or SQL-looking strings are refused there. Free text (names, titles, reasons) is stored as data
through bound parameters; it may contain quotes, but no NUL or other control characters and no
unpaired surrogates (PostgreSQL cannot store them, and nothing legitimate needs them).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from typing import Any

from aiohttp import web

from .names import name_problem
from .web import ApiError

CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # station/specialty/task codes, attempt/recording ids
ACCRED_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,63}")  # accreditation numbers
SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
INT_MAX = 2**31 - 1
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class Fields:
    """Typed access to a JSON object's fields; unknown fields are refused (catches typos)."""

    def __init__(self, obj: Any, where: str = "", allowed: set[str] | None = None) -> None:
        if not isinstance(obj, dict):
            raise ApiError(422, "expected an object", where or "body")
        self.obj, self.prefix = obj, (where + "." if where else "")
        if allowed is not None:
            extra = sorted(set(obj) - allowed)
            if extra:
                raise ApiError(422, f"unknown field {extra[0]!r}", self.prefix + str(extra[0]))

    def _get(self, name: str, required: bool) -> Any:
        if name not in self.obj or self.obj[name] is None:
            if required:
                raise ApiError(422, "required", self.prefix + name)
            return None
        return self.obj[name]

    def where(self, name: str) -> str:
        return self.prefix + name

    def text(self, name: str, *, required: bool = True, max_len: int = 200, default: str | None = None) -> Any:
        value = self._get(name, required)
        if value is None:
            return default
        return check_text(value, self.where(name), max_len)

    def name(self, name: str, *, required: bool = True, max_len: int = 200, default: str | None = None) -> Any:
        """A person's or a thing's name: text without control or invisible format characters (names.py)."""
        value = self.text(name, required=required, max_len=max_len, default=default)
        if value is not None and (problem := name_problem(value)):
            raise ApiError(422, problem, self.where(name))
        return value

    def ident(self, name: str, pattern: re.Pattern[str] = CODE_RE, *, required: bool = True) -> Any:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ApiError(422, f"not a valid identifier (must match {pattern.pattern})", self.where(name))
        return value

    def integer(self, name: str, *, required: bool = True, lo: int = 0, hi: int = INT_MAX) -> Any:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ApiError(422, f"expected an integer from {lo} to {hi}", self.where(name))
        return value

    def number(self, name: str, *, required: bool = True, lo: float = 0.0, hi: float = 1e9) -> Any:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ApiError(422, "expected a number", self.where(name))
        if not lo <= value <= hi:
            raise ApiError(422, f"expected a number from {lo} to {hi}", self.where(name))
        return float(value)

    def boolean(self, name: str, *, required: bool = True) -> Any:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise ApiError(422, "expected true or false", self.where(name))
        return value

    def choice(self, name: str, choices: tuple[str, ...] | frozenset[str], *, required: bool = True) -> Any:
        value = self._get(name, required)
        if value is None:
            return None
        if value not in choices:
            raise ApiError(422, f"expected one of {', '.join(sorted(choices))}", self.where(name))
        return value

    def uuid(self, name: str) -> str:
        value = self._get(name, True)
        try:
            parsed = uuid.UUID(value) if isinstance(value, str) and len(value) == 36 else None
        except ValueError:
            parsed = None
        if parsed is None or str(parsed) != value.lower():
            raise ApiError(422, "expected a UUID like 123e4567-e89b-12d3-a456-426614174000", self.where(name))
        return value.lower()

    def date(self, name: str) -> dt.date:
        value = self._get(name, True)
        try:
            # YYYY-MM-DD only: fromisoformat also takes the week form "2026-W27-3" (ten characters too)
            return dt.date.fromisoformat(value) if isinstance(value, str) and _DATE.fullmatch(value) else _bad()
        except ValueError:
            raise ApiError(422, "expected a date YYYY-MM-DD", self.where(name)) from None

    def utc_time(self, name: str) -> str:
        """ISO-8601 with an explicit UTC offset; returned exactly as given (it is hashed by stations)."""
        value = self._get(name, True)
        try:
            parse_utc(value)
        except ValueError:
            raise ApiError(422, "expected ISO-8601 UTC time like 2026-03-01T09:30:00Z", self.where(name)) from None
        return value


def parse_utc(value: Any) -> dt.datetime:
    """An ISO-8601 time with an explicit UTC offset ("Z" or +00:00), or ValueError."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError(value)
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.utcoffset() != dt.timedelta(0):
        raise ValueError(value)
    return parsed


def _bad() -> Any:
    raise ValueError


def check_text(value: Any, where: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise ApiError(422, "expected a string", where)
    if len(value) > max_len:
        raise ApiError(422, f"longer than {max_len} characters", where)
    if _CONTROL.search(value):
        raise ApiError(422, "control characters are not allowed", where)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, "invalid Unicode (unpaired surrogate)", where) from None
    return value


def path_ident(request: web.Request, name: str, pattern: re.Pattern[str] = CODE_RE) -> str:
    value = request.match_info[name]
    if not pattern.fullmatch(value):
        raise ApiError(400, f"not a valid {name} (must match {pattern.pattern})", f"URL {name}")
    return value


def path_int(request: web.Request, name: str) -> int:
    value = request.match_info[name]
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise ApiError(400, f"{name} must be a non-negative integer", f"URL {name}")
    return int(value)
