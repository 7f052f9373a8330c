"""The station's marks journal: mark events on SQLite (WAL, synchronous=FULL), written before anything else.

`append` returns only after the transaction is committed, so an acknowledged mark survives kill -9 and
power loss. The event_id is the primary key: re-sending an event is a no-op, a different event under a
known id is refused. Events not yet on the server are listed by `pending()` (with their proofs, as the server
wants them, by `pending_wire()`); the uploader calls `mark_synced(ids)` once the server has them.

Each of the station's own events is kept with its proof (the examiner's signature, checklists/examiner_keys.py).
A journal written before proofs existed is opened as it is (the column is added, empty): its events read and
merge as before, and those not yet on the server go without a proof, which the server refuses unless it is set
to accept unsigned marks during an upgrade (review_server/config.py accept_unsigned_station_marks).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text, inspect, select, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from checklists.marks import ExaminerSheet, MarkEvent, MarkEventError, dedup, merge

from . import station_clock
from .local_db import make_engine, rowcount


class Base(DeclarativeBase):
    pass


class JournalRow(Base):
    __tablename__ = "mark_events"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    attempt_id: Mapped[str] = mapped_column(String(200), index=True)
    examiner: Mapped[str] = mapped_column(String(200))
    seq: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)  # the event's JSON, exactly as the wire format
    stored_at: Mapped[str] = mapped_column(String(40))
    synced: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    proof: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON {"key_id", "sig"}; None: none was made


class AttemptRow(Base):
    __tablename__ = "attempts"

    attempt_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[str] = mapped_column(String(40))




class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.engine = make_engine(self.path)
        Base.metadata.create_all(self.engine)
        with self.engine.begin() as conn:  # a journal from before proofs: add the (empty) column
            if "proof" not in {c["name"] for c in inspect(conn).get_columns("mark_events")}:
                conn.execute(text("ALTER TABLE mark_events ADD COLUMN proof TEXT"))

    def close(self) -> None:
        self.engine.dispose()

    def append(self, new: MarkEvent, proof: dict[str, str] | None = None) -> bool:
        """Store the event (and the examiner's proof for it) durably; True if it is new, False if the same event
        was already there.

        Raises MarkEventError if the id is known with a different content, or if the examiner's sheet
        would not apply the event (e.g. a change after finalising without a reason).
        """
        with Session(self.engine) as session, session.begin():
            row = session.get(JournalRow, new.event_id)
            if row is not None:
                if MarkEvent.from_json(json.loads(row.body)) != new:
                    raise MarkEventError("event_id", f"{new.event_id} already stored with a different content")
                return False
            everyone = self._events(session, new.attempt_id, None)
            if everyone and everyone[0].checklist_hash != new.checklist_hash:
                raise MarkEventError("checklist_hash", "differs from the attempt's earlier events")
            known = [e for e in everyone if e.examiner == new.examiner]
            if known and max(e.seq for e in known) >= new.seq:
                raise MarkEventError("seq", f"must follow {max(e.seq for e in known)}, got {new.seq}")
            sheet = merge(known).get(new.examiner) or ExaminerSheet(new.examiner, new.checklist_hash)
            if (why := sheet.refusal(new)) is not None:
                field_name, message = why.split(":", 1)
                raise MarkEventError(field_name, message.strip())
            session.add(
                JournalRow(
                    event_id=new.event_id,
                    attempt_id=new.attempt_id,
                    examiner=new.examiner,
                    seq=new.seq,
                    body=json.dumps(new.to_json(), ensure_ascii=False, sort_keys=True),
                    stored_at=datetime.now(UTC).isoformat(),
                    synced=False,
                    proof=json.dumps(proof) if proof is not None else None,
                )
            )
        return True

    def add_from_server(self, events: Iterable[MarkEvent]) -> tuple[list[str], list[str]]:
        """Store events the server already holds (e.g. marked in the observation room): stored as synced, so the
        uploader never sends them back, and without the local seq/finalise checks (the server applied them;
        the shared merge rule orders them). Returns (new ids, ids known here with a different content)."""
        new: list[str] = []
        conflicts: list[str] = []
        with Session(self.engine) as session, session.begin():
            for event in events:
                row = session.get(JournalRow, event.event_id)
                if row is not None:
                    if MarkEvent.from_json(json.loads(row.body)) != event:
                        conflicts.append(event.event_id)
                    continue
                session.add(JournalRow(event_id=event.event_id, attempt_id=event.attempt_id, examiner=event.examiner,
                                       seq=event.seq, body=json.dumps(event.to_json(), ensure_ascii=False,
                                                                      sort_keys=True),
                                       stored_at=datetime.now(UTC).isoformat(), synced=True))
                session.flush()
                new.append(event.event_id)
        return new, conflicts

    def next_seq(self, attempt_id: str, examiner: str) -> int:
        with Session(self.engine) as session:
            known = self._events(session, attempt_id, examiner)
        return max((e.seq for e in known), default=0) + 1

    def get(self, event_id: str) -> MarkEvent | None:
        with Session(self.engine) as session:
            row = session.get(JournalRow, event_id)
            return None if row is None else MarkEvent.from_json(json.loads(row.body))

    def events(self, attempt_id: str) -> list[MarkEvent]:
        with Session(self.engine) as session:
            return self._events(session, attempt_id, None)

    def sheets(self, attempt_id: str) -> dict[str, ExaminerSheet]:
        return merge(self.events(attempt_id))

    def pending(self, limit: int | None = None) -> list[MarkEvent]:
        """Events not yet acknowledged by the server, oldest first."""
        query = (
            select(JournalRow.body).where(JournalRow.synced.is_(False)).order_by(JournalRow.stored_at, JournalRow.seq)
        )
        if limit is not None:
            query = query.limit(limit)
        with Session(self.engine) as session:
            return [MarkEvent.from_json(json.loads(body)) for body in session.scalars(query)]

    def pending_wire(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The pending events as the server takes them: each event's JSON, with "proof" when it has one."""
        query = (select(JournalRow.body, JournalRow.proof).where(JournalRow.synced.is_(False))
                 .order_by(JournalRow.stored_at, JournalRow.seq))
        if limit is not None:
            query = query.limit(limit)
        with Session(self.engine) as session:
            rows = session.execute(query).all()
        out = []
        for body, proof in rows:
            wire = MarkEvent.from_json(json.loads(body)).to_json()
            if proof:
                wire["proof"] = json.loads(proof)
            out.append(wire)
        return out

    def mark_synced(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        if not ids:
            return 0
        with Session(self.engine) as session, session.begin():
            result = session.execute(update(JournalRow).where(JournalRow.event_id.in_(ids)).values(synced=True))
            return rowcount(result)

    def started_at(self, attempt_id: str) -> str | None:
        with Session(self.engine) as session:
            row = session.get(AttemptRow, attempt_id)
            return None if row is None else row.started_at

    def start(self, attempt_id: str, when: str | None = None) -> str:
        """Record the attempt's start (once); returns the start time in force."""
        with Session(self.engine) as session, session.begin():
            row = session.get(AttemptRow, attempt_id)
            if row is None:
                row = AttemptRow(attempt_id=attempt_id, started_at=when or station_clock.now().isoformat())
                session.add(row)
            return row.started_at

    @staticmethod
    def _events(session: Session, attempt_id: str, examiner: str | None) -> list[MarkEvent]:
        query = select(JournalRow.body).where(JournalRow.attempt_id == attempt_id)
        if examiner is not None:
            query = query.where(JournalRow.examiner == examiner)
        return dedup(MarkEvent.from_json(json.loads(body)) for body in session.scalars(query))
