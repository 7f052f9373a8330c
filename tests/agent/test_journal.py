"""The marks journal: durable settings, idempotent appends, the lock after finalising, the sync list."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from checklists.marks import MarkEvent, MarkEventError
from station_agent.journal import Journal

HASH = "ab" * 32


def ev(seq: int, kind: str = "mark", examiner: str = "ivanova", **kw: object) -> MarkEvent:
    if kind == "mark":
        kw.setdefault("item", 1)
        kw.setdefault("done", True)
    return MarkEvent.new(
        attempt_id="A1", station_id="st1", examiner=examiner, kind=kind, checklist_hash=HASH, seq=seq, **kw
    )  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: Path):  # type: ignore[no-untyped-def]
    j = Journal(tmp_path / "marks.db")
    yield j
    j.close()


def test_sqlite_runs_in_wal_with_full_sync(journal: Journal) -> None:
    with journal.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL


def test_append_is_idempotent_and_conflicts_are_refused(journal: Journal) -> None:
    first = ev(1)
    assert journal.append(first) is True
    assert journal.append(first) is False
    assert journal.events("A1") == [first]
    changed = MarkEvent.from_json({**first.to_json(), "done": False})
    with pytest.raises(MarkEventError, match="event_id: .* different content") as info:
        journal.append(changed)
    assert info.value.field == "event_id"
    assert journal.events("A1") == [first]


def test_seq_must_increase_per_examiner(journal: Journal) -> None:
    journal.append(ev(1))
    assert journal.next_seq("A1", "ivanova") == 2
    assert journal.next_seq("A1", "petrov") == 1
    with pytest.raises(MarkEventError, match="^seq: must follow 1, got 1$"):
        journal.append(ev(1, item=2))
    journal.append(ev(1, examiner="petrov"))  # another examiner has their own sequence


def test_after_finalise_changes_need_a_reason(journal: Journal) -> None:
    journal.append(ev(1, item=1, done=True))
    journal.append(ev(2, kind="finalise"))
    with pytest.raises(MarkEventError, match="^reason: required after the checklist was finalised$"):
        journal.append(ev(3, item=1, done=False))
    with pytest.raises(MarkEventError, match="^kind: already finalised$"):
        journal.append(ev(3, kind="finalise", reason="again"))
    journal.append(ev(3, item=1, done=False, reason="seen on the video"))
    sheet = journal.sheets("A1")["ivanova"]
    assert sheet.marks == {1: False}
    assert sheet.finalised is True
    assert [e.reason for e in sheet.corrections] == ["seen on the video"]
    assert len(sheet.history) == 3


def test_reopen_needs_a_finalised_sheet(journal: Journal) -> None:
    with pytest.raises(MarkEventError, match="^kind: not finalised"):
        journal.append(ev(1, kind="reopen", reason="why"))
    journal.append(ev(1, kind="finalise"))
    journal.append(ev(2, kind="reopen", reason="wrong candidate sheet"))
    assert journal.sheets("A1")["ivanova"].finalised is False


def test_one_checklist_version_per_attempt(journal: Journal) -> None:
    journal.append(ev(1))
    other = MarkEvent.from_json({**ev(2).to_json(), "checklist_hash": "cd" * 32})
    with pytest.raises(MarkEventError, match="^checklist_hash: "):
        journal.append(other)


def test_pending_and_mark_synced_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "marks.db"
    journal = Journal(path)
    events = [ev(i, item=i) for i in range(1, 5)]
    for e in events:
        journal.append(e)
    assert journal.pending() == events
    assert journal.pending(limit=2) == events[:2]
    assert journal.mark_synced([events[0].event_id, events[2].event_id, str(uuid.uuid4())]) == 2
    assert journal.mark_synced([]) == 0
    journal.close()
    reopened = Journal(path)
    try:
        assert reopened.pending() == [events[1], events[3]]
        assert reopened.events("A1") == events
        assert reopened.get(events[1].event_id) == events[1]
        assert reopened.get(str(uuid.uuid4())) is None
    finally:
        reopened.close()


def test_start_time_is_recorded_once(journal: Journal) -> None:
    assert journal.started_at("A1") is None
    first = journal.start("A1", "2026-06-01T09:00:00+00:00")
    assert journal.start("A1", "2026-06-01T09:05:00+00:00") == first == "2026-06-01T09:00:00+00:00"
    assert journal.started_at("A1") == first


def test_a_journal_from_before_proofs_opens_and_keeps_its_events(tmp_path: Path) -> None:
    """An agent upgraded mid-day: its journal has no proof column; it opens, its events read and merge as before,
    its pending ones go up without a proof, and new ones are journaled with theirs."""
    import sqlite3

    from checklists.examiner_keys import sign, throwaway

    path = tmp_path / "marks.db"
    old = MarkEvent.new(attempt_id="A1", station_id="st1", examiner="ivanova", kind="mark", item=1, done=True,
                        checklist_hash="ab" * 32, seq=1)
    with sqlite3.connect(path) as db:  # the schema as the agent wrote it before proofs
        db.execute("CREATE TABLE mark_events (event_id VARCHAR(36) PRIMARY KEY, attempt_id VARCHAR(200), "
                   "examiner VARCHAR(200), seq INTEGER, body TEXT, stored_at VARCHAR(40), synced BOOLEAN)")
        db.execute("INSERT INTO mark_events VALUES (?, 'A1', 'ivanova', 1, ?, '2026-06-01T09:00:00+00:00', 0)",
                   (old.event_id, json.dumps(old.to_json(), sort_keys=True)))
    journal = Journal(path)
    try:
        assert journal.events("A1") == [old] and journal.sheets("A1")["ivanova"].marks == {1: True}
        assert journal.pending_wire() == [old.to_json()]  # no proof: the server decides (refused unless upgrading)
        key_id, key = throwaway("ivanova", "st1")
        new = MarkEvent.new(attempt_id="A1", station_id="st1", examiner="ivanova", kind="mark", item=2, done=False,
                            checklist_hash="ab" * 32, seq=2)
        assert journal.append(new, sign(key, key_id, new))
        wire = journal.pending_wire()
        assert [w["event_id"] for w in wire] == [old.event_id, new.event_id]
        assert "proof" not in wire[0] and wire[1]["proof"]["key_id"] == key_id
    finally:
        journal.close()
