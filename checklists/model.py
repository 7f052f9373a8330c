"""A checklist definition (оценочный лист) once loaded and validated; see checklists/FORMAT.md."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

PRESENTATIONS = {"do": "Выполнить", "say": "Сказать", "do_say": "Выполнить/Сказать"}

# Header fields of the official form, in the order they are printed, with their Russian labels.
FORM_FIELDS = {
    "date": "Дата",
    "specialty": "Специальность",
    "candidate_number": "Номер аккредитуемого",
    "station_number": "Номер станции",
    "skill": "Проверяемый практический навык",
    "examiner": "Член аккредитационной комиссии",
}
DEFAULT_FORM_TITLE = "ОЦЕНОЧНЫЙ ЛИСТ (ЧЕК-ЛИСТ)"
DEFAULT_FORM_STAGE = "II этап аккредитационного экзамена"


@dataclass(frozen=True)
class ChecklistItem:
    number: int
    action: str
    presentation: str = "do"  # one of PRESENTATIONS
    done_criteria: str | None = None
    phrase: str | None = None  # what the candidate is expected to say, if anything
    critical: bool = False


@dataclass(frozen=True)
class TimeLimits:
    reading_s: int = 30
    performing_s: int = 510
    changeover_s: int = 60


@dataclass(frozen=True)
class RatingScale:
    """A global rating beside the items (for standard setting); it never changes the pass rule."""

    minimum: int
    maximum: int
    borderline: int
    labels: dict[int, str] = field(default_factory=dict)

    def check(self, value: int) -> None:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"rating: must be between {self.minimum} and {self.maximum}, got {value}")


@dataclass(frozen=True)
class FormHeader:
    title: str = DEFAULT_FORM_TITLE
    stage: str = DEFAULT_FORM_STAGE
    fields: tuple[str, ...] = tuple(FORM_FIELDS)

    def labelled(self) -> list[tuple[str, str]]:
        return [(key, FORM_FIELDS[key]) for key in self.fields]


@dataclass(frozen=True)
class Checklist:
    specialty: str
    title: str
    version: str
    items: tuple[ChecklistItem, ...]
    station: int | None = None
    time_limits: TimeLimits = TimeLimits()
    threshold_percent: float = 70.0
    rating: RatingScale | None = None
    form: FormHeader = FormHeader()
    source: str = ""  # the file it came from; not part of the content

    def canonical(self) -> dict[str, Any]:
        """The content as plain data: what the hash covers (not the file's layout, comments or path)."""
        return {
            "specialty": self.specialty,
            "title": self.title,
            "station": self.station,
            "version": self.version,
            "time_limits": vars(self.time_limits),
            "threshold_percent": self.threshold_percent,
            "form": {"title": self.form.title, "stage": self.form.stage, "fields": list(self.form.fields)},
            "rating": None
            if self.rating is None
            else {
                "min": self.rating.minimum,
                "max": self.rating.maximum,
                "borderline": self.rating.borderline,
                "labels": {str(k): v for k, v in sorted(self.rating.labels.items())},
            },
            "items": [vars(item) for item in self.items],
        }

    @cached_property
    def content_hash(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def item_numbers(self) -> list[int]:
        return [item.number for item in self.items]

    def item(self, number: int) -> ChecklistItem:
        for item in self.items:
            if item.number == number:
                return item
        raise KeyError(number)

    def to_public(self) -> dict[str, Any]:
        """What a marking page needs: the content plus its hash."""
        data = self.canonical()
        data["content_hash"] = self.content_hash
        return data
