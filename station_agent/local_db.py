"""The station's durable SQLite files (marks journal, upload queue): WAL, and a commit is on disk.

synchronous=FULL makes every commit fsync, so an acknowledged mark or queued fragment survives
kill -9 and a power cut; WAL lets the web page read while the uploader writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import CursorResult, Engine, Result


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def make_engine(path: str | Path) -> Engine:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{Path(path)}")
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def rowcount(result: Result[Any]) -> int:
    """How many rows an INSERT, UPDATE or DELETE touched (its result is a CursorResult)."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount or 0)
