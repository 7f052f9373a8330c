"""Re-hash a day's stored media: every fragment of the day's attempts read back from storage and its SHA-256
compared with the one it was stored under (storage.py checks it on the way in; this finds what changed or went
missing since: a failing disk, a copied-over bucket, a hand in the folder).

One check per day at a time, kept in day_media_checks: it covers the fragments the day had when it started (ids up
to max_fragment_id); a fragment uploaded later makes it stale (day_completeness.py says so). Progress is written
every PROGRESS_EVERY fragments, so the completeness page shows it; a check cut short by a server restart stays
unfinished and is run again.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit
from .db import Database
from .models import Attempt, DayMediaCheck, Fragment, Recording, utcnow
from .storage import MediaStorage, NotFound

MEDIA_CHECK = "day.media_check"
PROGRESS_EVERY = 20
CHUNK = 1024 * 1024
MAX_FAILURES = 500  # listed; the count beyond is in the total


def day_fragments(day_id: int) -> Any:  # a Select of (id, sha256, size, track, seq, recording key, attempt id)
    return (select(Fragment.id, Fragment.sha256, Fragment.size, Fragment.track, Fragment.seq, Recording.key,
                   Recording.attempt_id)
            .join(Recording, Recording.id == Fragment.recording_id)
            .join(Attempt, Attempt.id == Recording.attempt_id)
            .where(Attempt.exam_day_id == day_id))


def begin(s: Session, day_id: int, actor: str) -> DayMediaCheck:
    """Start (or restart) the day's check; audited."""
    stats = day_fragments(day_id).subquery()
    total, newest = s.execute(select(func.count(), func.max(stats.c.id))).one()
    row = s.get(DayMediaCheck, day_id) or DayMediaCheck(exam_day_id=day_id)
    row.started_at, row.started_by, row.finished_at = utcnow(), actor, None
    row.max_fragment_id, row.fragments_total, row.fragments_done, row.bytes_done = newest or 0, total, 0, 0
    row.failures = []
    s.add(row)
    audit.append(s, actor, MEDIA_CHECK, str(day_id), {"fragments": total, "max_fragment_id": newest or 0})
    return row


def _digest(storage: MediaStorage, key: str) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with storage.open(key) as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def run(db: Database, storage: MediaStorage, day_id: int, stop: threading.Event | None = None) -> None:
    """Read every fragment back and compare (blocking: run it on a worker thread). `stop` set: it ends where it
    is, unfinished (the server is shutting down)."""
    with db.transaction() as s:
        row = s.get(DayMediaCheck, day_id)
        if row is None:
            return
        limit = row.max_fragment_id
        frags = s.execute(day_fragments(day_id).where(Fragment.id <= limit).order_by(Fragment.id)).all()
    failures: list[dict[str, Any]] = []
    done = size = 0
    for i, f in enumerate(frags, 1):
        if stop is not None and stop.is_set():
            _progress(db, day_id, done, size, failures, finished=False)
            return
        problem = None
        try:
            digest, n = _digest(storage, f.sha256)
            size += n
            if digest != f.sha256:
                problem = "hash"
            elif n != f.size:
                problem = "size"
        except (NotFound, FileNotFoundError):
            problem = "absent"
        except Exception as exc:  # a storage backend's own error (S3: botocore's), named in the result
            problem = f"unreadable: {exc.__class__.__name__}"
        if problem is not None:
            failures.append({"attempt_id": f.attempt_id, "recording": f.key, "track": f.track, "seq": f.seq,
                             "sha256": f.sha256, "problem": problem})
        done = i
        if i % PROGRESS_EVERY == 0:
            _progress(db, day_id, done, size, failures, finished=False)
    _progress(db, day_id, done, size, failures, finished=True)


def _progress(db: Database, day_id: int, done: int, size: int, failures: list[dict[str, Any]], finished: bool) -> None:
    with db.transaction() as s:
        row = s.get(DayMediaCheck, day_id)
        if row is None:
            return
        row.fragments_done, row.bytes_done, row.failures = done, size, failures[:MAX_FAILURES]
        if finished:
            row.finished_at = utcnow()


def newer_fragments(s: Session, day_id: int, since_id: int) -> int:
    """Fragments of the day stored after a check began (it did not cover them)."""
    sub = day_fragments(day_id).where(Fragment.id > since_id).subquery()
    return int(s.scalar(select(func.count()).select_from(sub)) or 0)
