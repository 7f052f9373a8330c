"""Retention: per-specialty periods, legal holds, and the run that deletes expired recordings' media.

A recording is due when its reference date (the attempt's exam day, or the upload date if unscheduled) is
more than `keep_days` ago for its specialty (the station's, else the candidate's). A specialty without a
policy keeps everything. An attempt with an unreleased legal hold (appeal, request) keeps everything.
Each deletion is one transaction with its audit row (every fragment's hash, the policy); the blobs no other
fragment refers to are removed after the commit (a failure leaves an unreferenced blob, never a dangling
row). The run itself is audited with its totals: together they are the destruction act's log extract.

`delete_recording` is the one way a recording is destroyed (the retention run and DELETE /api/recordings/{key}).
It looks at the holds inside its own transaction, with the attempt's row locked (as `add_hold` locks it), so a
hold placed at any moment before the deletion commits stops it: the refusal is audited and nothing is deleted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from . import audit, renditions
from .db import Database
from .models import (
    Attempt,
    Candidate,
    ExamDay,
    Fragment,
    LegalHold,
    Recording,
    Rendition,
    RetentionPolicy,
    Specialty,
    Station,
)
from .storage import MediaStorage

RETENTION_RUN = "retention.run"
POLICY_SET = "retention.policy.set"
HOLD_ADD = "hold.add"
HOLD_RELEASE = "hold.release"
HOLD_KINDS = ("appeal", "request", "other")
DELETE_REFUSED = "recording.delete.refused"


@dataclass
class RunReport:
    deleted: list[dict[str, Any]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    media_deleted: int = 0
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "deleted": self.deleted,
            "held": self.held,
            "media_deleted": self.media_deleted,
        }


def held_attempts(s: Session) -> set[str]:
    return set(s.scalars(select(LegalHold.attempt_id).where(LegalHold.released_at.is_(None))))


def _lock_attempt(s: Session, attempt_id: str) -> None:
    """Serialise hold changes and deletions on one attempt (PostgreSQL: the row lock; SQLite: every
    transaction is BEGIN IMMEDIATE already)."""
    s.execute(select(Attempt.id).where(Attempt.id == attempt_id).with_for_update())


def active_holds(s: Session, attempt_id: str | None) -> list[dict[str, Any]]:
    """The unreleased holds on an attempt, oldest first (locking the attempt's row)."""
    if attempt_id is None:
        return []
    _lock_attempt(s, attempt_id)
    rows = s.scalars(select(LegalHold).where(LegalHold.attempt_id == attempt_id, LegalHold.released_at.is_(None))
                     .order_by(LegalHold.id))
    return [{"id": h.id, "kind": h.kind, "reason": h.reason, "created_by": h.created_by} for h in rows]


def held_message(attempt_id: str, holds: list[dict[str, Any]]) -> str:
    named = "; ".join(f"hold {h['id']} ({h['kind']}, by {h['created_by']}: {h['reason']})" for h in holds)
    return f"attempt {attempt_id!r} is under legal hold: {named}"


def add_hold(s: Session, attempt_id: str, kind: str, reason: str, actor: str) -> LegalHold:
    _lock_attempt(s, attempt_id)
    hold = LegalHold(attempt_id=attempt_id, kind=kind, reason=reason, created_by=actor)
    s.add(hold)
    s.flush()
    audit.append(s, actor, HOLD_ADD, attempt_id, {"hold_id": hold.id, "kind": kind, "reason": reason})
    return hold


def release_hold(s: Session, hold_id: int, reason: str, actor: str) -> LegalHold | None:
    """End a hold (the appeal decided, the request answered); None if there is no such hold. Already released:
    returned as it is, unchanged (the caller tells)."""
    hold = s.get(LegalHold, hold_id)
    if hold is None or hold.released_at is not None:
        return hold
    _lock_attempt(s, hold.attempt_id)
    hold.released_at, hold.released_by = dt.datetime.now(dt.UTC), actor
    audit.append(s, actor, HOLD_RELEASE, hold.attempt_id, {"hold_id": hold.id, "reason": reason})
    return hold


def set_policy(s: Session, specialty: Specialty, keep_days: int, actor: str) -> RetentionPolicy:
    """Recordings of the specialty are kept `keep_days` after the exam day."""
    row = s.scalar(select(RetentionPolicy).where(RetentionPolicy.specialty_id == specialty.id))
    old = row.keep_days if row else None
    if row is None:
        row = RetentionPolicy(specialty_id=specialty.id, keep_days=keep_days, updated_by=actor)
        s.add(row)
    row.keep_days, row.updated_by, row.updated_at = keep_days, actor, dt.datetime.now(dt.UTC)
    audit.append(s, actor, POLICY_SET, specialty.code, {"keep_days": keep_days, "was": old})
    return row


def due(s: Session, today: dt.date) -> tuple[list[tuple[int, str, int, str]], list[str]]:
    """(recording id, key, keep_days, specialty) of the recordings past their period; and the held keys."""
    policies = {sp: days for sp, days in s.execute(select(RetentionPolicy.specialty_id, RetentionPolicy.keep_days))}
    if not policies:
        return [], []
    codes = dict(s.execute(select(Specialty.id, Specialty.code)).all())
    held = held_attempts(s)
    q = (
        select(
            Recording.id,
            Recording.key,
            Recording.attempt_id,
            Recording.created_at,
            ExamDay.day,
            Station.specialty_id,
            Candidate.specialty_id,
        )
        .join(Station, Station.id == Recording.station_id)
        .outerjoin(Attempt, Attempt.id == Recording.attempt_id)
        .outerjoin(ExamDay, ExamDay.id == Attempt.exam_day_id)
        .outerjoin(Candidate, Candidate.id == Attempt.candidate_id)
        .order_by(Recording.id)
    )
    out, held_keys = [], []
    for rec_id, key, attempt_id, created, day, station_sp, cand_sp in s.execute(q):
        sp = station_sp if station_sp is not None else cand_sp
        if sp not in policies:
            continue
        reference = day or created.date()
        if reference + dt.timedelta(days=policies[sp]) >= today:
            continue
        if attempt_id in held:
            held_keys.append(key)
            continue
        out.append((rec_id, key, policies[sp], codes.get(sp, "")))
    return out, held_keys


@dataclass
class Deletion:
    """What delete_recording did: the blobs nothing refers to any more (for the caller to remove after the
    commit), or, when holds cover the attempt, nothing at all but the audited refusal."""

    orphans: list[str] = field(default_factory=list)
    holds: list[dict[str, Any]] = field(default_factory=list)


def delete_recording(s: Session, rec: Recording, actor: str, reason: str, extra: dict[str, Any]) -> Deletion:
    """Delete the rows of one recording with the audit record, unless a legal hold covers its attempt (then
    audit the refusal and delete nothing)."""
    holds = active_holds(s, rec.attempt_id)
    if holds:
        audit.append(s, actor, DELETE_REFUSED, rec.key,
                     {"reason": reason, "attempt_id": rec.attempt_id, "holds": holds, **extra})
        return Deletion(holds=holds)
    frags: list[dict[str, Any]] = [{"track": f.track, "seq": f.seq, "sha256": f.sha256, "size": f.size}
                                   for f in rec.fragments]
    copies = renditions.rendition_hashes(s, rec.id)  # the review copies go with their originals
    key = rec.key
    for f in list(rec.fragments):
        s.delete(f)
    s.execute(delete(Rendition).where(Rendition.recording_id == rec.id))
    s.delete(rec)
    s.flush()
    hashes = sorted({f["sha256"] for f in frags} | set(copies))
    orphans = [h for h in hashes if not s.scalar(select(func.count()).where(Fragment.sha256 == h))]
    details = {"reason": reason, "fragments": frags, **({"renditions": copies} if copies else {}), **extra}
    audit.append(s, actor, audit.DELETE, key, details)
    return Deletion(orphans=orphans)


def _recording_bytes(s: Session, recording_id: int) -> int | None:
    return s.scalar(select(func.sum(Fragment.size)).where(Fragment.recording_id == recording_id))


def run(
    db: Database, storage: MediaStorage, actor: str, today: dt.date | None = None, dry_run: bool = False
) -> RunReport:
    today = today or dt.datetime.now(dt.UTC).date()
    todo, held = db.run(lambda s: due(s, today))
    report = RunReport(held=held, dry_run=dry_run)
    for rec_id, key, days, specialty in todo:
        size = db.run(partial(_recording_bytes, recording_id=rec_id))
        entry = {"recording": key, "specialty": specialty, "keep_days": days, "bytes": int(size or 0)}
        if dry_run:
            report.deleted.append(entry)
            continue

        def delete(s: Session, rid: int = rec_id, days: int = days, specialty: str = specialty) -> Deletion:
            rec = s.get(Recording, rid)
            if rec is None:
                return Deletion()
            reason = f"retention: {days} days for specialty {specialty}"
            return delete_recording(s, rec, actor, reason, {"retention_run": today.isoformat()})

        done = db.run(delete)
        if done.holds:  # held since the list was made
            held.append(key)
            continue
        report.deleted.append(entry)
        for h in done.orphans:
            storage.delete(h)
            report.media_deleted += 1
    if not dry_run:
        db.run(
            lambda s: audit.append(
                s,
                actor,
                RETENTION_RUN,
                today.isoformat(),
                {
                    "deleted": [d["recording"] for d in report.deleted],
                    "held": held,
                    "media_deleted": report.media_deleted,
                },
            )
        )
    return report
