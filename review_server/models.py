"""Database models (SQLAlchemy 2, typed declarative). Schema changes go through Alembic migrations.

Candidates are known by their accreditation number; personal names live in a separate optional table
that only roles with `candidates.personal` may read. Media is addressed by SHA-256. Mark events and
audit events are append-only rows; scores are derived from mark events.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so migrations can refer to them on both SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stored as naive UTC (SQLite has no time zones), always returned as an aware UTC datetime."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


SHA256 = String(64)


class ExamDay(Base):
    __tablename__ = "exam_days"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Specialty(Base):
    __tablename__ = "specialties"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class Task(Base):
    """A practical task (skill checked), e.g. basic CPR of an adult."""

    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    specialty_id: Mapped[int | None] = mapped_column(ForeignKey("specialties.id"))


class Station(Base):
    __tablename__ = "stations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    room: Mapped[str] = mapped_column(String(32), default="", server_default="")  # shown on its pictures (ident.py)
    specialty_id: Mapped[int | None] = mapped_column(ForeignKey("specialties.id"))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    tokens: Mapped[list[StationToken]] = relationship(back_populates="station")


class StationToken(Base):
    """A station's bearer token, stored as its SHA-256 (the token itself is random and shown once)."""

    __tablename__ = "station_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(SHA256, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    station: Mapped[Station] = relationship(back_populates="tokens")


class Candidate(Base):
    __tablename__ = "candidates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    accreditation_number: Mapped[str] = mapped_column(String(64), unique=True)
    specialty_id: Mapped[int | None] = mapped_column(ForeignKey("specialties.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CandidatePersonal(Base):
    """Personal details, optional and kept apart: pages and media use the accreditation number."""

    __tablename__ = "candidate_personal"
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True)
    last_name: Mapped[str] = mapped_column(String(200), default="")
    first_name: Mapped[str] = mapped_column(String(200), default="")
    middle_name: Mapped[str] = mapped_column(String(200), default="")


class Attempt(Base):
    """One candidate at one station on one day. The id is chosen by the station (works offline)."""

    __tablename__ = "attempts"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), index=True)
    exam_day_id: Mapped[int | None] = mapped_column(ForeignKey("exam_days.id"), index=True)
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChecklistVersion(Base):
    __tablename__ = "checklist_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(SHA256, unique=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    version: Mapped[str] = mapped_column(String(64), default="")
    title: Mapped[str] = mapped_column(String(300), default="")
    source: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Recording(Base):
    __tablename__ = "recordings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # chosen by the station
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), index=True)
    attempt_id: Mapped[str | None] = mapped_column(ForeignKey("attempts.id"), index=True)
    # When media time 0 was on the station's wall clock (sent with the init files): places a part's marks and
    # the station's health events on its timeline. None for recordings from before it was sent.
    media_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    fragments: Mapped[list[Fragment]] = relationship(
        back_populates="recording", order_by=lambda: [Fragment.track, Fragment.seq]
    )


class Fragment(Base):
    """One stored piece of a recording; the bytes live in media storage under `sha256`."""

    __tablename__ = "fragments"
    __table_args__ = (UniqueConstraint("recording_id", "track", "seq", name="uq_fragments_recording_track_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"))
    track: Mapped[str] = mapped_column(String(64))  # the manifest's track id
    kind: Mapped[str] = mapped_column(String(8))  # "init" (seq 0) or "media" (seq 1, 2, ...)
    seq: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(SHA256, index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    start_s: Mapped[float | None] = mapped_column(Float)
    end_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    recording: Mapped[Recording] = relationship(back_populates="fragments")


class Rendition(Base):
    """A browser-playable copy (H.264) of a stored track whose codec the review page's browser cannot decode (H.265
    in Chromium on Linux), made once by the server in the background at low priority (review_server/renditions.py).
    The original stays what is archived and exported; this is a view of it, deleted with its recording."""

    __tablename__ = "renditions"
    __table_args__ = (UniqueConstraint("recording_id", "track", name="uq_renditions_recording_track"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), index=True)
    track: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # pending | done | failed
    source_fragments: Mapped[int] = mapped_column(Integer, default=0)  # media fragments of the original it covers
    pieces: Mapped[str] = mapped_column(Text, default="[]")  # JSON [{kind, sha256, size, start, end}], init first
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class MarkEvent(Base):
    """Append-only mark events (format owned by checklists/marks.py); event_id is the idempotency key."""

    __tablename__ = "mark_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id"), index=True)
    station_id: Mapped[str] = mapped_column(String(64))
    examiner: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    item: Mapped[int | None] = mapped_column(Integer)
    done: Mapped[bool | None] = mapped_column(Boolean)
    rating: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    checklist_hash: Mapped[str] = mapped_column(SHA256)
    wall_time: Mapped[str] = mapped_column(String(40))  # ISO-8601 UTC, kept exactly as sent
    recording_offset_s: Mapped[float | None] = mapped_column(Float)
    seq: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(80))  # "station:CODE" or "user:LOGIN"
    # A station's event: the examiner's tablet credential that signed it and the signature (base64), kept so that
    # anyone can check it again later (checklists/examiner_keys.py). None for marks made on the server's pages
    # (the session says who) and for unsigned station events accepted during an upgrade.
    key_id: Mapped[str | None] = mapped_column(String(32))
    signature: Mapped[str | None] = mapped_column(String(100))


class CprFigures(Base):
    """A station's CPR figures report (`osce-cpr-figures/1`, see media/cpr/FORMATS.md) for an attempt, kept as
    uploaded; informative only (the examiners mark), it goes into the export package as cpr_figures.json."""

    __tablename__ = "cpr_figures"
    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id"), primary_key=True)
    body: Mapped[str] = mapped_column(Text)  # the JSON exactly as uploaded (UTF-8)
    sha256: Mapped[str] = mapped_column(SHA256)
    uploaded_by: Mapped[str] = mapped_column(String(80))
    uploaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class HealthEvent(Base):
    """A station's health warning (camera lost or frozen, microphone silent, disk low, upload behind, agent
    restarted) from when it began to when it ended, as the agent saw it on the exam clock. Sent by the agent's
    durable queue (station_agent/health_log.py), idempotent by (station, event id); shown on the attempt page."""

    __tablename__ = "health_events"
    __table_args__ = (UniqueConstraint("station_id", "event_id", name="uq_health_events_station_event"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    attempt_id: Mapped[str | None] = mapped_column(String(64), index=True)  # the attempt then running, if any
    code: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(String(300))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # None while it lasts
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class StationStatus(Base):
    """Each station's last status report (format: media/station_status.py), as received, for the centre console's
    stations board; a station whose last report is older than the server's `station_offline_s` is offline."""

    __tablename__ = "station_status"
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), primary_key=True)
    report: Mapped[str] = mapped_column(Text)  # the JSON as received
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Score(Base):
    """A derived score per attempt and checklist version (recomputable from mark events)."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("attempt_id", "checklist_version_id", name="uq_scores_attempt_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id"))
    checklist_version_id: Mapped[int] = mapped_column(ForeignKey("checklist_versions.id"))
    percent: Mapped[float] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column(Boolean)
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    computed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExaminerAssignment(Base):
    """Which stations (on which day; None = any day) an examiner marks."""

    __tablename__ = "examiner_assignments"
    __table_args__ = (UniqueConstraint("user_id", "station_id", "exam_day_id", name="uq_examiner_assignments_triple"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"))
    exam_day_id: Mapped[int | None] = mapped_column(ForeignKey("exam_days.id"))


class TabletCredential(Base):
    """An examiner's credential for the tablet of one station on one exam day (checklists/examiner_keys.py): the
    station's roster entry (the signing key wrapped under the PIN; the PIN is kept nowhere) and the public key
    that checks the marks it signs. Issuing a new one for the same examiner, station and day replaces the old
    (the roster drops it; marks it signed before stay valid); revoking refuses every mark it signed."""

    __tablename__ = "tablet_credentials"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), index=True)
    exam_day_id: Mapped[int] = mapped_column(ForeignKey("exam_days.id"))
    public_key: Mapped[str] = mapped_column(String(64))
    roster_entry: Mapped[str] = mapped_column(Text)  # JSON, as served to the station
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    replaced_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(200))


class UserSession(Base):
    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(SHA256, unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class LoginAttempt(Base):
    """Login outcomes, for throttling per account and per address."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_login_at", "login", "at"), Index("ix_login_attempts_ip_at", "ip", "at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    success: Mapped[bool] = mapped_column(Boolean)


class AuditBurst(Base):
    """A burst of the same refusal (throttled logins from one address, a station's refused marks): the audit log
    gets one row when a burst starts; the repeats are only counted here, and the count of a burst goes into the
    row that starts the next one for the same key (review_server/throttle.py)."""

    __tablename__ = "audit_bursts"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    first_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer)


class AuditEvent(Base):
    """Append-only, hash-chained audit log (see audit.py). `seq` is assigned under a lock, no gaps."""

    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))  # ISO-8601 UTC text, hashed exactly as stored
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(300), default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    # Unique: a hash can be the predecessor of one row only, so the chain cannot fork even under a race.
    prev_hash: Mapped[str] = mapped_column(SHA256, unique=True)
    hash: Mapped[str] = mapped_column(SHA256, unique=True)


class ExportRequest(Base):
    """A request for materials (e.g. from the Ministry): its number, date, who asks and what for."""

    __tablename__ = "export_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(64))
    request_date: Mapped[dt.date] = mapped_column(Date)
    requester: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What is asked (a Ministry request names a candidate, a day, a stage or skill: ministry.py), from which the
    # selection is built; and when the answer went out, by whom and how (the outgoing letter's number...).
    asked_number: Mapped[str | None] = mapped_column(String(64))
    asked_day: Mapped[dt.date | None] = mapped_column(Date)
    asked_stage: Mapped[str | None] = mapped_column(String(80))
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    sent_by: Mapped[str | None] = mapped_column(String(200))
    sent_note: Mapped[str | None] = mapped_column(Text)


class ExportRequestAttempt(Base):
    """An attempt selected for a request (it is also under legal hold while the request is open)."""

    __tablename__ = "export_request_attempts"
    __table_args__ = (UniqueConstraint("request_id", "attempt_id", name="uq_export_request_attempts_pair"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("export_requests.id", ondelete="CASCADE"), index=True)
    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id"), index=True)


class ExportPackage(Base):
    """One ZIP package written for a request (kept in the server's export folder for download)."""

    __tablename__ = "export_packages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("export_requests.id"), index=True)
    file_name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(SHA256)
    size: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExaminerAttempt(Base):
    """Which examiners marked which attempt, with the attempt's exam day: the examiner filter of the archive
    search walks (examiner, exam_day_id, attempt_id) in order. Kept by database triggers (migration 0002) on
    mark_events inserts and deletes and attempts.exam_day_id updates, so every write path keeps it true; never
    written by the application."""

    __tablename__ = "examiner_attempts"
    __table_args__ = (Index("ix_examiner_attempts_order", "examiner", "exam_day_id", "attempt_id"),)
    examiner: Mapped[str] = mapped_column(String(128), primary_key=True)
    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id"), primary_key=True, index=True)
    exam_day_id: Mapped[int | None] = mapped_column(Integer)


# Archive search across days (review_server/search.py): newest exam day first, then attempt id, narrowed by
# station, task or examiner. Added in migration 0002.
Index("ix_attempts_day_order", Attempt.exam_day_id, Attempt.id)
Index("ix_attempts_station_day", Attempt.station_id, Attempt.exam_day_id, Attempt.id)
Index("ix_attempts_task_day", Attempt.task_id, Attempt.exam_day_id, Attempt.id)
Index("ix_mark_events_examiner_attempt", MarkEvent.examiner, MarkEvent.attempt_id)
# An examiner's attempts are looked up by id and sorted by day: with exam_day_id in the index (PostgreSQL
# INCLUDE), that is an index-only scan and only the page's rows are read from the table.
Index("ix_attempts_id_day", Attempt.id, postgresql_include=["exam_day_id"])


class RetentionPolicy(Base):
    """How long recordings of a specialty are kept (days after the exam day, or after upload if unscheduled)."""

    __tablename__ = "retention_policies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    specialty_id: Mapped[int] = mapped_column(ForeignKey("specialties.id"), unique=True)
    keep_days: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LegalHold(Base):
    """An attempt whose recordings retention must not delete (appeal, request) until the hold is released."""

    __tablename__ = "legal_holds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "appeal" | "request" | "other"
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    released_by: Mapped[str | None] = mapped_column(String(200))


class ReviewLink(Base):
    """A time-limited link for an appeal reviewer to one attempt; only the token's SHA-256 is stored."""

    __tablename__ = "review_links"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(SHA256, unique=True)
    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


# --- readiness checks before the exam day (review_server/readiness.py) ------------------------------------------


class ReadinessRun(Base):
    """One press of "check" on the readiness page (one station or all): the readiness act (акт готовности)."""

    __tablename__ = "readiness_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requested_by: Mapped[str] = mapped_column(String(200))  # the audit actor, "user:LOGIN"
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    seconds: Mapped[int] = mapped_column(Integer)  # the length of the test recording asked for


class ReadinessCheck(Base):
    """One station's check in a run: asked, taken by the station's agent, its report and the server's judgement.
    Kept apart from candidates' attempts: its media rows are `ReadinessFragment`s, never `Recording`s, so no
    protocol, archive search, export or retention run of candidates' material ever sees them."""

    __tablename__ = "readiness_checks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("readiness_runs.id"), index=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), index=True)
    # requested -> claimed -> recording -> uploading -> done; or refused (by the agent), offline (never taken),
    # failed (no report in time)
    state: Mapped[str] = mapped_column(String(16), index=True)
    ok: Mapped[bool | None] = mapped_column(Boolean)  # None until judged
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    report: Mapped[str | None] = mapped_column(Text)  # the agent's report (media/readiness_report.py), as received
    items: Mapped[list | None] = mapped_column(JSON)  # the judged items (review_server/readiness_judge.py)
    media_purged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ReadinessFragment(Base):
    """One stored fragment of a check's test recording (uploaded over tus and verified by SHA-256 like any)."""

    __tablename__ = "readiness_fragments"
    __table_args__ = (UniqueConstraint("check_id", "track", "seq", name="uq_readiness_fragments_place"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    check_id: Mapped[int] = mapped_column(ForeignKey("readiness_checks.id"), index=True)
    track: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    seq: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(SHA256, index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
# -- exam days set up in the browser, and closed after them (routes/days_admin.py, routes/days_close.py) ---------


class DayPlan(Base):
    """How an exam day set up in the browser runs: its specialty, an attempt's times, when its first stream starts
    (local time, the server's `timezone`). Fixed when its schedule went through the one import (day_import.py);
    from then on the plan and its slots are read-only and the exam clock serves the slots to the stations."""

    __tablename__ = "day_plans"
    exam_day_id: Mapped[int] = mapped_column(ForeignKey("exam_days.id", ondelete="CASCADE"), primary_key=True)
    specialty_id: Mapped[int] = mapped_column(ForeignKey("specialties.id"))
    reading_s: Mapped[int] = mapped_column(Integer)
    performing_s: Mapped[int] = mapped_column(Integer)
    changeover_s: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[str] = mapped_column(String(5))  # "HH:MM", local
    created_by: Mapped[str] = mapped_column(String(200))
    fixed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    fixed_by: Mapped[str | None] = mapped_column(String(200))


class DayStation(Base):
    """A station in use on a planned day, with the checklist (task) it runs that day."""

    __tablename__ = "day_stations"
    __table_args__ = (UniqueConstraint("exam_day_id", "station_id", name="uq_day_stations_day_station"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_day_id: Mapped[int] = mapped_column(ForeignKey("exam_days.id", ondelete="CASCADE"), index=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"))
    checklist: Mapped[str] = mapped_column(String(64))  # the checklist file's stem = the task's code


class DayCandidate(Base):
    """A candidate on a planned day's list, as imported from the centre's spreadsheet: the row it came from, its
    stream and the stream's start time if the list gave one. Names go to candidate_personal, never here."""

    __tablename__ = "day_candidates"
    __table_args__ = (UniqueConstraint("exam_day_id", "candidate_id", name="uq_day_candidates_day_candidate"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_day_id: Mapped[int] = mapped_column(ForeignKey("exam_days.id", ondelete="CASCADE"), index=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    row: Mapped[int] = mapped_column(Integer)
    stream: Mapped[str] = mapped_column(String(64), default="")
    starts_at: Mapped[str | None] = mapped_column(String(5))  # "HH:MM", local


class DaySlot(Base):
    """One attempt of a planned day's schedule (generated in circuits, editable until the day is fixed)."""

    __tablename__ = "day_slots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_day_id: Mapped[int] = mapped_column(ForeignKey("exam_days.id", ondelete="CASCADE"), index=True)
    attempt_id: Mapped[str] = mapped_column(String(64), unique=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), index=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    reading_starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    reading_s: Mapped[int] = mapped_column(Integer)
    performing_s: Mapped[int] = mapped_column(Integer)


class CandidateUpload(Base):
    """A candidate list file between its upload and its import (the page maps its columns in between); removed
    by the import and by the next upload for the day, since it holds personal data."""

    __tablename__ = "candidate_uploads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_day_id: Mapped[int] = mapped_column(ForeignKey("exam_days.id", ondelete="CASCADE"), index=True)
    file_name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(SHA256)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class DayClosure(Base):
    """An exam day closed: its marks are locked (day_lock.py) until an admin reopens it with a reason. Every
    closing is a row; the one with no reopened_at is in force."""

    __tablename__ = "day_closures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_day_id: Mapped[int] = mapped_column(ForeignKey("exam_days.id", ondelete="CASCADE"), index=True)
    closed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")  # why it was closed with something still missing
    missing: Mapped[int] = mapped_column(Integer, default=0)
    reopened_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reopened_by: Mapped[str | None] = mapped_column(String(200))
    reopen_reason: Mapped[str | None] = mapped_column(Text)


class DayMediaCheck(Base):
    """The last re-hash of a day's stored media (media_check.py): every fragment read back from storage and its
    SHA-256 compared with the one it was stored under. It covers the day's fragments up to max_fragment_id."""

    __tablename__ = "day_media_checks"
    exam_day_id: Mapped[int] = mapped_column(ForeignKey("exam_days.id", ondelete="CASCADE"), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    started_by: Mapped[str] = mapped_column(String(200))
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    max_fragment_id: Mapped[int] = mapped_column(Integer)
    fragments_total: Mapped[int] = mapped_column(Integer)
    fragments_done: Mapped[int] = mapped_column(Integer, default=0)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[list] = mapped_column(JSON, default=list)  # [{"recording", "track", "seq", "sha256", "problem"}]


class Flag(Base):
    """An observer's or examiner's flag on what they saw on a station's live picture (routes/flags.py): a hint,
    an outsider in the room, a breach of order, a technical problem, or their own words. `at` is the moment seen
    (the live picture's recording-clock time `media_t` brought onto the server's clock), not when it was sent.
    Never deleted (no route deletes one, retention keeps them with the attempt): withdrawn by its author with a
    reason, and shown struck through."""

    __tablename__ = "flags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), index=True)
    attempt_id: Mapped[str | None] = mapped_column(String(64), index=True)  # the attempt then running, if known
    camera: Mapped[str | None] = mapped_column(String(8))  # the live picture flagged (cam0 ...), if one played
    media_t: Mapped[float | None] = mapped_column(Float)  # that picture's recording-clock time, seconds
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)  # the moment seen, on the server's clock
    kind: Mapped[str] = mapped_column(String(16))  # prompt | outsider | disorder | technical | other
    text: Mapped[str | None] = mapped_column(String(300))  # the author's words (kind "other")
    author: Mapped[str] = mapped_column(String(200))  # the audit actor, "user:LOGIN"
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    withdrawn_by: Mapped[str | None] = mapped_column(String(200))
    withdraw_reason: Mapped[str | None] = mapped_column(Text)
