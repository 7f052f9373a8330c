"""The station's durable upload queue: one row per finished fragment of a recording, on SQLite (WAL,
synchronous=FULL), so that a power cut or kill -9 loses nothing that was enqueued or acknowledged.

A row is `pending` until the server has confirmed its SHA-256, then `done` (committed before the uploader
moves on, so a confirmed fragment is never sent again), or `failed` when the server refused it for good
(the reason is kept). The tus upload URL is stored as soon as the server created it, so an agent restart
resumes the same upload from the server's offset. Marks are not copied here: the marks journal
(station_agent/journal.py) is their durable queue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Float, Integer, String, Text, UniqueConstraint, func, select, update
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from media.manifest import read_manifest

from .local_db import make_engine, rowcount

PENDING, DONE, FAILED = "pending", "done", "failed"


class Base(DeclarativeBase):
    pass


class QueueRow(Base):
    __tablename__ = "upload_items"
    __table_args__ = (UniqueConstraint("recording_id", "track", "seq", name="uq_upload_items_place"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    folder: Mapped[str] = mapped_column(Text)
    recording_id: Mapped[str] = mapped_column(String(64))
    attempt_id: Mapped[str | None] = mapped_column(String(64))
    track: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    file: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    start: Mapped[float | None] = mapped_column(Float)
    end: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(8), default=PENDING, index=True)
    tus_url: Mapped[str | None] = mapped_column(Text)
    tries: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    added_at: Mapped[float] = mapped_column(Float)
    done_at: Mapped[float | None] = mapped_column(Float)


@dataclass(frozen=True)
class Item:
    id: int
    folder: Path
    recording_id: str
    attempt_id: str | None
    track: str
    seq: int
    kind: str
    file: str
    sha256: str
    size: int
    start: float | None
    end: float | None
    state: str
    tus_url: str | None
    tries: int
    last_error: str | None
    added_at: float

    @property
    def path(self) -> Path:
        return self.folder / self.file


def _item(row: QueueRow) -> Item:
    return Item(
        row.id,
        Path(row.folder),
        row.recording_id,
        row.attempt_id,
        row.track,
        row.seq,
        row.kind,
        row.file,
        row.sha256,
        row.size,
        row.start,
        row.end,
        row.state,
        row.tus_url,
        row.tries,
        row.last_error,
        row.added_at,
    )




class UploadQueue:
    def __init__(self, db_path: str | Path) -> None:
        self.path = Path(db_path)
        self.engine = make_engine(self.path)
        Base.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def add_recording_folder(self, folder: Path) -> int:
        """Enqueue every fragment the folder's manifest lists that is not queued yet; return how many were new.

        Idempotent and safe while the recording is still being written (a cut-short last line is skipped).
        """
        folder = Path(folder).resolve()
        manifest = read_manifest(folder)
        recording_id = str(manifest.header["recording_id"])
        attempt_id = manifest.header.get("attempt_id")
        now = time.time()
        rows = [
            {
                "folder": str(folder),
                "recording_id": recording_id,
                "attempt_id": attempt_id,
                "track": f.track,
                "seq": f.seq,
                "kind": f.kind,
                "file": f.file,
                "sha256": f.sha256,
                "size": f.size,
                "start": f.start,
                "end": f.end,
                "state": PENDING,
                "tries": 0,
                "added_at": now,
            }
            for f in manifest.fragments
        ]
        if not rows:
            return 0
        with Session(self.engine) as session, session.begin():
            result = session.execute(insert(QueueRow).values(rows).on_conflict_do_nothing())
            return rowcount(result)

    def next_pending(self, skip: set[int] | None = None) -> Item | None:
        """The oldest pending item (not in `skip`)."""
        query = select(QueueRow).where(QueueRow.state == PENDING).order_by(QueueRow.id)
        if skip:
            query = query.where(QueueRow.id.not_in(skip))
        with Session(self.engine) as session:
            row = session.scalars(query.limit(1)).first()
            return None if row is None else _item(row)

    def get(self, item_id: int) -> Item | None:
        with Session(self.engine) as session:
            row = session.get(QueueRow, item_id)
            return None if row is None else _item(row)

    def items(self, state: str | None = None) -> list[Item]:
        query = select(QueueRow).order_by(QueueRow.id)
        if state is not None:
            query = query.where(QueueRow.state == state)
        with Session(self.engine) as session:
            return [_item(r) for r in session.scalars(query)]

    def _set(self, item_id: int, **values: Any) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(QueueRow).where(QueueRow.id == item_id).values(**values))

    def set_url(self, item_id: int, url: str | None) -> None:
        self._set(item_id, tus_url=url)

    def mark_done(self, item_id: int) -> None:
        """Durably record that the server confirmed the item's SHA-256 (committed before returning)."""
        self._set(item_id, state=DONE, done_at=time.time(), last_error=None)

    def record_error(self, item_id: int, error: str, *, permanent: bool = False) -> None:
        values: dict[str, Any] = {"tries": QueueRow.tries + 1, "last_error": error[:2000]}
        if permanent:
            values["state"] = FAILED
        self._set(item_id, **values)

    def retry_failed(self) -> int:
        """Put failed items back in the queue (after the cause was fixed)."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(update(QueueRow).where(QueueRow.state == FAILED).values(state=PENDING))
            return rowcount(result)

    def stats(self) -> dict[str, Any]:
        """length and bytes of the pending items, age in seconds of the oldest one (None if none), failed count."""
        with Session(self.engine) as session:
            length, size, oldest = session.execute(
                select(func.count(), func.coalesce(func.sum(QueueRow.size), 0), func.min(QueueRow.added_at)).where(
                    QueueRow.state == PENDING
                )
            ).one()
            failed = session.scalar(select(func.count()).where(QueueRow.state == FAILED))
        return {
            "length": int(length),
            "bytes": int(size),
            "oldest_age_s": None if oldest is None else round(max(0.0, time.time() - oldest), 3),
            "failed": int(failed or 0),
        }
