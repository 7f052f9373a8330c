"""The review server's texts, Russian first and English, in one catalogue: ru.json and en.json beside this file,
one section per page ("common", "login", "attempt", …). The templates read it (the `t` of every page) and so
does the JavaScript (the page's `data-texts`, filled from the same sections). Both files have the same keys
(tests/server/test_pages.py checks it)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

LANGS = ("ru", "en")
DEFAULT = "ru"
FOLDER = Path(__file__).resolve().parent

CATALOGUE: dict[str, dict[str, dict[str, str]]] = {
    lang: json.loads((FOLDER / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGS
}


class HasQuery(Protocol):
    @property
    def query(self) -> Mapping[str, str]: ...


def lang_of(request: HasQuery) -> str:
    """The page's language: ?lang=en for English, Russian otherwise (the one place ?lang is read)."""
    return "en" if request.query.get("lang") == "en" else DEFAULT


def other(lang: str) -> str:
    return "ru" if lang == "en" else "en"


def result_text(result: str | None, lang: str) -> str:
    """A stored result ("сдано", "не сдано") as the reader's language says it; anything else as it is."""
    if not result:
        return "—"
    return CATALOGUE[lang]["common"].get(f"result.{result}", result)


def decimal(x: float, lang: str, digits: int = 1) -> str:
    """A number with a decimal comma in Russian, a point in English."""
    text = f"{x:.{digits}f}"
    return text.replace(".", ",") if lang == "ru" else text


def section(lang: str, name: str) -> dict[str, str]:
    """One page's texts (what a page's script gets through data-texts)."""
    return CATALOGUE[lang][name]
