"""The health-event wire format (media/health_events.py), the one definition the agent's sender and the server's
route share: what one side writes, the other reads back unchanged; what is wrong is named by its JSON path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from media.health_events import MAX_EVENTS, HealthEvent, HealthEventError, batch, parse_batch
from station_agent.health_log import HealthLog

T0 = datetime(2026, 7, 1, 9, 0, 5, 250000, tzinfo=UTC)


def test_what_the_agent_sends_the_server_reads_back_unchanged(tmp_path: Path) -> None:
    hl = HealthLog(tmp_path / "health-events.db")
    hl.restarted(T0, None)
    hl.observe([{"code": "camera_frozen", "text": "Камера cam0: изображение застыло (3.0 с)"}], "st1-007",
               T0 + timedelta(seconds=2))
    hl.observe([], "st1-007", T0 + timedelta(seconds=9))
    sent = hl.unsent()
    body = batch(sent)
    assert parse_batch(body["events"]) == sent
    frozen = next(e for e in sent if e.code == "camera_frozen")
    assert frozen.to_json()["started_at"] == "2026-07-01T09:00:07.250+00:00"
    assert frozen.shown() == {k: v for k, v in frozen.to_json().items() if k != "id"}
    hl.mark_sent(sent)
    assert hl.unsent() == []  # the stored times compare equal to what was sent


@pytest.mark.parametrize(("change", "where"), [
    ({"started_at": "09:00"}, "events[0].started_at"),
    ({"started_at": "2026-07-01T09:00:05+03:00"}, "events[0].started_at"),
    ({"ended_at": "2026-07-01T09:00:00Z"}, "events[0].ended_at"),
    ({"extra": 1}, "events[0].extra"),
    ({"id": "../e"}, "events[0].id"),
    ({"code": "c" * 33}, "events[0].code"),  # the server's column holds 32
    ({"text": "x" * 301}, "events[0].text"),
    ({"text": "a\x00b"}, "events[0].text"),
    ({"attempt_id": 7}, "events[0].attempt_id"),
    ({"text": None}, "events[0].text"),
])
def test_a_bad_event_is_named_by_its_path(change: dict[str, object], where: str) -> None:
    event = {**HealthEvent("e1", "disk_low", "Диск", "A1", T0).to_json(), **change}
    with pytest.raises(HealthEventError) as caught:
        parse_batch([event])
    assert caught.value.where == where, caught.value


def test_a_batch_is_a_list_of_at_most_max_events() -> None:
    one = HealthEvent("e1", "disk_low", "Диск", None, T0)
    for bad in ("not a list", [one.to_json()] * (MAX_EVENTS + 1)):
        with pytest.raises(HealthEventError, match="^events: "):
            parse_batch(bad)
    with pytest.raises(ValueError):
        batch([one] * (MAX_EVENTS + 1))
    assert parse_batch([one.to_json()] * MAX_EVENTS)[0] == one
