"""Recording a received fragment in the database: one rule for both ways media arrives (tus and PUT).

Before any byte is stored, its structure is checked (media/fmp4_check.py): what is not an fMP4 init or media
fragment, or names a track its init does not declare, is refused with 422.

A fragment is (recording, track, seq) -> SHA-256. A retry of the same bytes is a no-op; the same
place with other bytes, a recording of another station, an attempt that is not this station's on the
schedule (attempt_owner.py), or a recording moved to another attempt is a 409, checked before any byte is
stored and again when the row is written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from media import fmp4_check

from .attempt_owner import station_attempt
from .models import Fragment, Recording
from .storage import MediaStorage
from .validate import parse_utc
from .web import ApiError


@dataclass(frozen=True)
class IncomingFragment:
    recording: str
    track: str
    seq: int
    kind: str  # "init" | "media"
    sha256: str
    size: int
    attempt_id: str | None
    start_s: float | None
    end_s: float | None
    media_from: dt.datetime | None = None  # the part's media time 0 on the station's wall clock


@dataclass(frozen=True)
class Where:
    """Where a refusal points the client: the header, query or URL part that carried each value."""

    attempt: str
    recording: str
    seq: str


def already_recorded(s: Session, station_id: int, frag: IncomingFragment, where: Where) -> bool:
    """True if this exact fragment is recorded already; ApiError 409 if it conflicts with what is held."""
    if frag.attempt_id is not None:
        station_attempt(s, station_id, frag.attempt_id, where.attempt)
    rec = s.scalar(select(Recording).where(Recording.key == frag.recording))
    if rec is None:
        return False
    if rec.station_id != station_id:
        raise ApiError(409, f"recording {frag.recording!r} belongs to another station", where.recording)
    if frag.attempt_id is not None and rec.attempt_id not in (None, frag.attempt_id):
        raise ApiError(409, f"recording {frag.recording!r} belongs to attempt {rec.attempt_id!r}", where.attempt)
    row = s.scalar(select(Fragment).where(
        Fragment.recording_id == rec.id, Fragment.track == frag.track, Fragment.seq == frag.seq))
    if row is None:
        return False
    if row.sha256 != frag.sha256:
        raise ApiError(409, f"fragment {frag.track}/{frag.seq} of {frag.recording!r} is already stored with other "
                       "content", where.seq)
    return True


def utc_or_none(value: str | None, where: str) -> dt.datetime | None:
    """An optional ISO-8601 UTC time sent with a fragment (media_from), or a 400 naming where it was."""
    if not value:
        return None
    try:
        return parse_utc(value)
    except ValueError:
        raise ApiError(400, "expected ISO-8601 UTC time like 2026-03-01T09:30:00.000+00:00", where) from None


def record_fragment(s: Session, station_id: int, frag: IncomingFragment, where: Where) -> bool:
    """Write the fragment's row (and its recording and attempt if new); False if it was there already."""
    if already_recorded(s, station_id, frag, where):
        return False
    rec = s.scalar(select(Recording).where(Recording.key == frag.recording))
    if rec is None:
        rec = Recording(key=frag.recording, station_id=station_id, attempt_id=frag.attempt_id)
        s.add(rec)
        s.flush()
    elif frag.attempt_id is not None:
        rec.attempt_id = frag.attempt_id
    if rec.media_from is None and frag.media_from is not None:
        rec.media_from = frag.media_from
    s.add(Fragment(recording_id=rec.id, track=frag.track, kind=frag.kind, seq=frag.seq, sha256=frag.sha256,
                   size=frag.size, start_s=frag.start_s, end_s=frag.end_s))
    s.flush()
    return True


def init_sha(s: Session, frag: IncomingFragment) -> str | None:
    """The SHA-256 of the init segment already stored for this fragment's recording and track, if any."""
    return s.scalar(select(Fragment.sha256).join(Recording).where(
        Recording.key == frag.recording, Fragment.track == frag.track, Fragment.kind == "init"))


def check_content(storage: MediaStorage, fh: BinaryIO, size: int, frag: IncomingFragment,
                  init: str | None, where: str) -> None:
    """Refuse (422) bytes that are not the fMP4 file the metadata says: garbage, a cut-short file, a fragment
    naming a track its recording's init does not have (checked when the init is stored already)."""
    try:
        if frag.kind == "media" and init is not None:
            with storage.open(init) as init_fh:
                fmp4_check.check(fh, size, "media", init_fh, storage.size(init))
        else:
            fmp4_check.check(fh, size, frag.kind)
    except fmp4_check.Fmp4Error as exc:
        raise ApiError(422, f"not an fMP4 {frag.kind} fragment: {exc}", where) from None
    finally:
        fh.seek(0)
