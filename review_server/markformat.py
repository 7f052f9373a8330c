"""The bridge to the one mark-event format, owned by checklists/marks.py.

The server checks each event field by field itself (so a refusal names the JSON path), then hands the
same object to `checklists.marks.MarkEvent.from_json`, so that the server never accepts an event the
shared format would refuse. Sheets are derived with the shared merge rule, never a second one.
"""

from __future__ import annotations

from typing import Any

from checklists.marks import MarkEvent, MarkEventError, merge

from .web import ApiError


def check_with_contract(obj: dict[str, Any], where: str) -> None:
    try:
        MarkEvent.from_json(dict(obj))
    except MarkEventError as exc:
        raise ApiError(422, f"not a valid mark event: {exc}", where or "body") from None


def merged_sheets(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The examiners' sheets from stored events (checklists.marks.merge), as JSON."""
    try:
        merged = merge(MarkEvent.from_json(e) for e in events)
    except MarkEventError as exc:
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
