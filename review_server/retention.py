"""Retention: per-specialty periods, legal holds, and the run that deletes expired recordings' media.

A recording is due when its reference date (the attempt's exam day, or the upload date if unscheduled) is
more than `keep_days` ago for its specialty (the station's, else the candidate's). A specialty without a
policy keeps everything. An attempt with an unreleased legal hold (appeal, request) keeps everything.
Each deletion is one transaction with its audit row (every fragment's hash, the policy); the blobs no other
fragment refers to are removed after the commit (a failure leaves an unreferenced blob, never a dangling
row). The run itself is audited with its totals: together they are the destruction act's log extract.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit
from .db import Database
from .models import (
    Attempt,
    Candidate,
    ExamDay,
    Fragment,
    LegalHold,
    Recording,
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


def add_hold(s: Session, attempt_id: str, kind: str, reason: str, actor: str) -> LegalHold:
    hold = LegalHold(attempt_id=attempt_id, kind=kind, reason=reason, created_by=actor)
    s.add(hold)
    s.flush()
    audit.append(s, actor, HOLD_ADD, attempt_id, {"hold_id": hold.id, "kind": kind, "reason": reason})
    return hold


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


def delete_recording(s: Session, rec: Recording, actor: str, reason: str, extra: dict[str, Any]) -> list[str]:
    """Delete the rows of one recording with the audit record; return the blobs nothing refers to any more."""
    frags: list[dict[str, Any]] = [{"track": f.track, "seq": f.seq, "sha256": f.sha256, "size": f.size}
                                   for f in rec.fragments]
    key = rec.key
    for f in list(rec.fragments):
        s.delete(f)
    s.delete(rec)
    s.flush()
    hashes = sorted({f["sha256"] for f in frags})
    orphans = [h for h in hashes if not s.scalar(select(func.count()).where(Fragment.sha256 == h))]
    audit.append(s, actor, audit.DELETE, key, {"reason": reason, "fragments": frags, **extra})
    return orphans


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
        report.deleted.append(entry)
        if dry_run:
            continue

        def delete(s: Session, rid: int = rec_id, days: int = days, specialty: str = specialty) -> list[str]:
            rec = s.get(Recording, rid)
            if rec is None:
                return []
            reason = f"retention: {days} days for specialty {specialty}"
            return delete_recording(s, rec, actor, reason, {"retention_run": today.isoformat()})

        for h in db.run(delete):
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
