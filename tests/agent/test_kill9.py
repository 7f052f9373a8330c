"""An acknowledged mark survives kill -9 of the agent: a real process, really killed."""

from __future__ import annotations

import uuid
from pathlib import Path

from station_agent.journal import Journal

from .conftest import AgentProcess, Client


def test_mark_acknowledged_then_kill9_is_there_after_restart(agent: AgentProcess, tmp_path: Path) -> None:
    client = Client(agent.start())
    assert client.request("POST", "/api/login", {"examiner": "ivanova", "pin": "246802"})[0] == 200
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for item, event_id in zip((1, 2, 3), ids, strict=True):
        status, answer = client.request(
            "POST", "/api/events", {"event_id": event_id, "kind": "mark", "item": item, "done": item != 2}
        )
        assert status == 200, answer
        assert answer["stored"] is True
    agent.kill9()  # straight after the last acknowledgement: no clean shutdown, no checkpoint

    client = Client(agent.start())
    assert client.request("GET", "/api/state")[0] == 401  # a new process: sign in again
    assert client.request("POST", "/api/login", {"examiner": "ivanova", "pin": "246802"})[0] == 200
    status, state = client.request("GET", "/api/state")
    assert status == 200
    assert state["sheet"]["marks"] == {"1": True, "2": False, "3": True}
    assert state["score"]["done"] == 2
    assert [e["event_id"] for e in state["sheet"]["history"]] == ids
    # Re-sending the last event after the restart is recognised, not stored twice.
    status, answer = client.request(
        "POST", "/api/events", {"event_id": ids[2], "kind": "mark", "item": 3, "done": True}
    )
    assert (status, answer["stored"]) == (200, False)
    agent.stop()
    journal = Journal(tmp_path / "marks.db")
    try:
        assert [e.event_id for e in journal.pending()] == ids  # all waiting for the uploader
    finally:
        journal.close()
