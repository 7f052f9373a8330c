"""Query-parameter checks shared by the routes: each refusal is an ApiError(400) naming the parameter
("query <name>"), so the archive search API and page, the protocol and the quality report answer alike."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from ..validate import CODE_RE
from ..web import ApiError

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INT = re.compile(r"[0-9]{1,6}")


def date_param(q: Mapping[str, str], name: str) -> dt.date | None:
    """An optional YYYY-MM-DD date (None when absent)."""
    value = q.get(name)
    if value is None:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "expected a date YYYY-MM-DD", f"query {name}") from None


def int_param(q: Mapping[str, str], name: str, default: int, hi: int) -> int:
    """An optional integer from 1 to hi (default when absent)."""
    value = q.get(name)
    if value is None:
        return default
    if not _INT.fullmatch(value) or not 1 <= int(value) <= hi:
        raise ApiError(400, f"expected an integer from 1 to {hi}", f"query {name}")
    return int(value)


def ident_param(q: Mapping[str, str], name: str, pattern: re.Pattern[str] = CODE_RE) -> str | None:
    """An optional identifier matching pattern (None when absent)."""
    value = q.get(name)
    if value is not None and not pattern.fullmatch(value):
        raise ApiError(400, f"must match {pattern.pattern}", f"query {name}")
    return value


def day_and_specialty(q: Mapping[str, str], day_name: str) -> tuple[dt.date, str]:
    """The required exam date (parameter day_name) and specialty code of a per-day report."""
    day = date_param(q, day_name)
    if day is None:
        raise ApiError(400, "expected a date YYYY-MM-DD", f"query {day_name}")
    specialty = q.get("specialty", "")
    if not CODE_RE.fullmatch(specialty):
        raise ApiError(400, f"must match {CODE_RE.pattern}", "query specialty")
    return day, specialty
