"""The HTML forms of the server's pages: reading a form's fields with the checks of validate.py, and refusing bad
input with the field named and a message in the page's language (the catalogue's "form" section), where the JSON
API answers {"error", "where"} in English.

A page handler reads its fields through `Form` (or raises `FormError` itself for what only the database can tell,
such as "already exists"), catches `FormError` and renders its page again with `error` (the field's name, the
message key and its values) and the values typed, so nothing typed is lost; the template (templates/_forms.html)
names the field with its label (the page section's "field.<name>") and marks its input `aria-invalid`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .names import name_problem
from .validate import _CONTROL, _DATE, CODE_RE, INT_MAX


class FormError(Exception):
    """A field's value is refused: `field` is the input's name, `key` the message in the "form" section."""

    def __init__(self, field: str, key: str, form: str = "", **values: Any) -> None:
        super().__init__(f"{field}: {key}")
        self.field, self.key, self.values = field, key, values
        self.form = form  # which of the page's forms (a page may have several with the same field names)


class Form:
    """A submitted form's text fields (routes read them with web.read_form); every getter strips the value and
    treats an empty one as absent."""

    def __init__(self, data: dict[str, str]) -> None:
        self.data = data

    def raw(self, name: str) -> str:
        return (self.data.get(name) or "").strip()

    def _value(self, name: str, required: bool) -> str | None:
        value = self.raw(name)
        if not value:
            if required:
                raise FormError(name, "required")
            return None
        return value

    def text(self, name: str, *, required: bool = True, max_len: int = 200) -> str | None:
        value = self._value(name, required)
        if value is None:
            return None
        if len(value) > max_len:
            raise FormError(name, "too_long", n=max_len)
        if _CONTROL.search(value) or not _encodable(value):
            raise FormError(name, "control")
        return value

    def name(self, name: str, *, required: bool = True, max_len: int = 200) -> str | None:
        value = self.text(name, required=required, max_len=max_len)
        if value is not None and name_problem(value):
            raise FormError(name, "control")
        return value

    def ident(self, name: str, pattern: re.Pattern[str] = CODE_RE, *, required: bool = True) -> str | None:
        value = self._value(name, required)
        if value is not None and not pattern.fullmatch(value):
            raise FormError(name, "ident")
        return value

    def choice(self, name: str, choices: tuple[str, ...] | list[str], *, required: bool = True) -> str | None:
        value = self._value(name, required)
        if value is not None and value not in choices:
            raise FormError(name, "choice")
        return value

    def date(self, name: str, *, required: bool = True) -> dt.date | None:
        value = self._value(name, required)
        if value is None:
            return None
        try:
            if not _DATE.fullmatch(value):
                raise ValueError(value)
            return dt.date.fromisoformat(value)
        except ValueError:
            raise FormError(name, "date") from None

    def integer(self, name: str, *, required: bool = True, lo: int = 0, hi: int = INT_MAX) -> int | None:
        value = self._value(name, required)
        if value is None:
            return None
        if not re.fullmatch(r"[0-9]{1,10}", value) or not lo <= int(value) <= hi:
            raise FormError(name, "integer", lo=lo, hi=hi)
        return int(value)


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
