"""Property tests: whatever JSON arrives, the event parser answers with a value or a 4xx, never a crash."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from review_server.routes.marks import EVENT_FIELDS, parse_event
from review_server.web import ApiError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

VALID: dict[str, Any] = {
    "event_id": str(uuid.uuid4()),
    "attempt_id": "att1",
    "station_id": "S1",
    "examiner": "examiner",
    "kind": "mark",
    "item": 1,
    "done": True,
    "rating": None,
    "reason": None,
    "checklist_hash": "c" * 64,
    "wall_time": "2026-06-01T09:30:00+00:00",
    "recording_offset_s": 1.5,
    "seq": 1,
}


def test_the_valid_event_parses() -> None:
    assert parse_event(dict(VALID), "e") == VALID


@settings(max_examples=300, deadline=None)
@given(obj=json_values)
def test_any_json_is_a_value_or_a_4xx(obj: Any) -> None:
    try:
        parse_event(obj, "e")
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.where


@settings(max_examples=400, deadline=None)
@given(field=st.sampled_from(EVENT_FIELDS), value=json_values)
def test_one_field_changed_to_anything_is_a_value_or_a_4xx_naming_it(field: str, value: Any) -> None:
    obj = {**VALID, field: value}
    try:
        ev = parse_event(obj, "e")
    except ApiError as exc:
        assert 400 <= exc.status < 500
        assert exc.where.startswith("e")
    else:
        assert set(ev) == set(EVENT_FIELDS)
