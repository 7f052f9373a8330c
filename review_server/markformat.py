"""The bridge to the one mark-event format, owned by checklists/marks.py.

The server checks each event field by field itself (so a refusal names the JSON path), then hands the
same object to `checklists.marks.MarkEvent.from_json`, so that the server never accepts an event the
shared format would refuse. Until checklists.marks exists, only the server's own checks apply.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from .app import ApiError


def contract() -> ModuleType | None:
    """checklists.marks, or None while it does not exist yet."""
    try:
        return importlib.import_module("checklists.marks")
    except ModuleNotFoundError as exc:
        if exc.name not in ("checklists.marks", "checklists"):
            raise  # the module exists but is broken: say so, do not hide it
        return None


def check_with_contract(obj: dict[str, Any], where: str) -> None:
    marks = contract()
    if marks is None:
        return
    try:
        marks.MarkEvent.from_json(dict(obj))
    except marks.MarkEventError as exc:
        raise ApiError(422, f"not a valid mark event: {exc}", where or "body") from None


def merged_sheets(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The examiners' sheets from stored events (checklists.marks.merge), as JSON."""
    marks = contract()
    if marks is None:
        raise ApiError(503, "the mark-event module (checklists.marks) is not installed", "server")
    try:
        merged = marks.merge(marks.MarkEvent.from_json(e) for e in events)
    except marks.MarkEventError as exc:
        raise ApiError(409, f"the stored events cannot be merged: {exc}", "mark events") from None
    return {
        examiner: {
            "checklist_hash": sheet.checklist_hash,
            "marks": {str(item): done for item, done in sorted(sheet.marks.items())},
            "rating": sheet.rating,
            "finalised": sheet.finalised,
            "corrections": [e.event_id for e in sheet.corrections],
            "rejected": [e.event_id for e in sheet.rejected],
        }
        for examiner, sheet in sorted(merged.items())
    }
