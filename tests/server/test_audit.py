"""The audit log is a hash chain: modifying, deleting or reordering a row is found by `verify`.

The tampering is done directly in the database with SQL, as an attacker with database access would.
"""

from __future__ import annotations

import threading

from sqlalchemy import func, select, text

from review_server import audit
from review_server.db import Database
from review_server.models import AuditEvent


def fill(db: Database, n: int = 5) -> None:
    for i in range(n):
        db.run(lambda s, i=i: audit.append(s, f"user:u{i}", audit.RECORDING_VIEW, f"rec{i}", {"i": i, "note": "ё'\""}))


def check(db: Database) -> audit.VerifyResult:
    return db.run(audit.verify)


def test_an_untouched_chain_verifies(db: Database) -> None:
    assert check(db).ok and check(db).checked == 0
    fill(db)
    result = check(db)
    assert result.ok and result.checked == 5 and result.first_bad_seq is None
    first = db.run(lambda s: s.get(AuditEvent, 1))
    assert first.prev_hash == audit.GENESIS


def test_modified_content_is_detected(db: Database) -> None:
    fill(db)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET target = 'rec-other' WHERE seq = 3"))
    result = check(db)
    assert not result.ok and result.first_bad_seq == 3 and "content" in result.reason


def test_modified_details_or_time_are_detected(db: Database) -> None:
    fill(db)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET at = '2020-01-01T00:00:00.000000Z' WHERE seq = 2"))
    assert check(db).first_bad_seq == 2


def test_rehashing_a_modified_row_still_breaks_the_next_link(db: Database) -> None:
    fill(db)

    def forge(s):  # type: ignore[no-untyped-def]
        ev = s.get(AuditEvent, 2)
        ev.actor = "user:innocent"
        ev.hash = audit.row_hash(ev.prev_hash, ev.seq, ev.at, ev.actor, ev.action, ev.target, ev.details)

    db.run(forge)
    result = check(db)
    assert not result.ok and result.first_bad_seq == 3 and "prev_hash" in result.reason


def test_deleted_row_is_detected(db: Database) -> None:
    fill(db)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    result = check(db)
    assert not result.ok and result.first_bad_seq == 3 and "missing" in result.reason


def test_deleted_row_with_renumbering_is_detected(db: Database) -> None:
    fill(db)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 2"))
        for seq in (3, 4, 5):
            conn.execute(text("UPDATE audit_events SET seq = :new WHERE seq = :old"), {"new": seq - 1, "old": seq})
    result = check(db)
    assert not result.ok and result.first_bad_seq == 2


def test_reordered_rows_are_detected(db: Database) -> None:
    fill(db)
    with db.engine.begin() as conn:  # swap rows 2 and 4 by their sequence numbers
        conn.execute(text("UPDATE audit_events SET seq = -1 WHERE seq = 2"))
        conn.execute(text("UPDATE audit_events SET seq = 2 WHERE seq = 4"))
        conn.execute(text("UPDATE audit_events SET seq = 4 WHERE seq = -1"))
    result = check(db)
    assert not result.ok and result.first_bad_seq == 2


def test_truncating_the_tail_is_only_visible_against_a_kept_head(db: Database) -> None:
    """Deleting the newest rows leaves a valid shorter chain; the count and last hash are what to keep
    elsewhere (printed by `osce server audit verify`) to notice that."""
    fill(db)
    kept = check(db)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 5"))
    now = check(db)
    assert now.ok and now.checked == kept.checked - 1
    assert now.head != kept.head


def test_concurrent_appends_keep_one_unbroken_chain(db: Database) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                db.run(lambda s, i=i: audit.append(s, f"t{n}", audit.LOGIN, str(i)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.run(lambda s: s.scalar(select(func.count()).select_from(AuditEvent))) == 40
    assert check(db).ok and check(db).checked == 40
