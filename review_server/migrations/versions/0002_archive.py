"""archive: export requests and packages, search indexes, retention policies, legal holds, review links

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


# examiner_attempts (examiner, attempt_id, exam_day_id) is the projection of mark_events x attempts, kept by
# triggers (insert, delete of mark events; attempts.exam_day_id updates), so that every path that writes marks
# or schedules attempts keeps it true. NB for later migrations: on SQLite, a batch (copy-and-move) rebuild of
# mark_events or attempts drops these triggers; recreate them there with create_triggers().
PG_TRIGGERS = [
    """CREATE FUNCTION osce_examiner_attempts_from_mark() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO examiner_attempts (examiner, attempt_id, exam_day_id)
        SELECT NEW.examiner, NEW.attempt_id, a.exam_day_id FROM attempts a WHERE a.id = NEW.attempt_id
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER trg_mark_events_examiner AFTER INSERT ON mark_events
    FOR EACH ROW EXECUTE FUNCTION osce_examiner_attempts_from_mark()""",
    """CREATE FUNCTION osce_examiner_attempts_unmark() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM examiner_attempts WHERE examiner = OLD.examiner AND attempt_id = OLD.attempt_id
        AND NOT EXISTS (SELECT 1 FROM mark_events m WHERE m.examiner = OLD.examiner AND m.attempt_id = OLD.attempt_id);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER trg_mark_events_unexaminer AFTER DELETE ON mark_events
    FOR EACH ROW EXECUTE FUNCTION osce_examiner_attempts_unmark()""",
    """CREATE FUNCTION osce_examiner_attempts_day() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE examiner_attempts SET exam_day_id = NEW.exam_day_id WHERE attempt_id = NEW.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER trg_attempts_exam_day AFTER UPDATE OF exam_day_id ON attempts
    FOR EACH ROW WHEN (OLD.exam_day_id IS DISTINCT FROM NEW.exam_day_id)
    EXECUTE FUNCTION osce_examiner_attempts_day()""",
]
SQLITE_TRIGGERS = [
    """CREATE TRIGGER trg_mark_events_examiner AFTER INSERT ON mark_events BEGIN
        INSERT OR IGNORE INTO examiner_attempts (examiner, attempt_id, exam_day_id)
        SELECT NEW.examiner, NEW.attempt_id, a.exam_day_id FROM attempts a WHERE a.id = NEW.attempt_id;
    END""",
    """CREATE TRIGGER trg_mark_events_unexaminer AFTER DELETE ON mark_events BEGIN
        DELETE FROM examiner_attempts WHERE examiner = OLD.examiner AND attempt_id = OLD.attempt_id
        AND NOT EXISTS (SELECT 1 FROM mark_events m WHERE m.examiner = OLD.examiner AND m.attempt_id = OLD.attempt_id);
    END""",
    """CREATE TRIGGER trg_attempts_exam_day AFTER UPDATE OF exam_day_id ON attempts
    WHEN OLD.exam_day_id IS NOT NEW.exam_day_id BEGIN
        UPDATE examiner_attempts SET exam_day_id = NEW.exam_day_id WHERE attempt_id = NEW.id;
    END""",
]


def create_triggers() -> None:
    for statement in PG_TRIGGERS if op.get_bind().dialect.name == "postgresql" else SQLITE_TRIGGERS:
        op.execute(statement)


def drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS trg_attempts_exam_day ON attempts")
        op.execute("DROP TRIGGER IF EXISTS trg_mark_events_examiner ON mark_events")
        op.execute("DROP TRIGGER IF EXISTS trg_mark_events_unexaminer ON mark_events")
        op.execute("DROP FUNCTION IF EXISTS osce_examiner_attempts_day()")
        op.execute("DROP FUNCTION IF EXISTS osce_examiner_attempts_unmark()")
        op.execute("DROP FUNCTION IF EXISTS osce_examiner_attempts_from_mark()")
    else:
        op.execute("DROP TRIGGER IF EXISTS trg_attempts_exam_day")
        op.execute("DROP TRIGGER IF EXISTS trg_mark_events_examiner")
        op.execute("DROP TRIGGER IF EXISTS trg_mark_events_unexaminer")


def upgrade() -> None:
    op.create_table(
        "export_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("request_date", sa.Date(), nullable=False),
        sa.Column("requester", sa.String(length=300), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_requests")),
    )
    op.create_table(
        "export_request_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["export_requests.id"],
            name=op.f("fk_export_request_attempts_request_id_export_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["attempts.id"], name=op.f("fk_export_request_attempts_attempt_id_attempts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_request_attempts")),
        sa.UniqueConstraint("request_id", "attempt_id", name="uq_export_request_attempts_pair"),
    )
    with op.batch_alter_table("export_request_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_export_request_attempts_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_export_request_attempts_attempt_id"), ["attempt_id"], unique=False)
    op.create_table(
        "export_packages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["export_requests.id"], name=op.f("fk_export_packages_request_id_export_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_packages")),
    )
    with op.batch_alter_table("export_packages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_export_packages_request_id"), ["request_id"], unique=False)
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index("ix_attempts_day_order", ["exam_day_id", "id"], unique=False)
        batch_op.create_index("ix_attempts_station_day", ["station_id", "exam_day_id", "id"], unique=False)
        batch_op.create_index("ix_attempts_task_day", ["task_id", "exam_day_id", "id"], unique=False)
        batch_op.create_index("ix_attempts_id_day", ["id"], unique=False, postgresql_include=["exam_day_id"])
    with op.batch_alter_table("mark_events", schema=None) as batch_op:
        batch_op.create_index("ix_mark_events_examiner_attempt", ["examiner", "attempt_id"], unique=False)

    op.create_table(
        "retention_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("specialty_id", sa.Integer(), nullable=False),
        sa.Column("keep_days", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["specialty_id"], ["specialties.id"], name=op.f("fk_retention_policies_specialty_id_specialties")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_policies")),
        sa.UniqueConstraint("specialty_id", name=op.f("uq_retention_policies_specialty_id")),
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.Column("released_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["attempt_id"], ["attempts.id"], name=op.f("fk_legal_holds_attempt_id_attempts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_legal_holds_attempt_id"), ["attempt_id"], unique=False)
    op.create_table(
        "review_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("attempt_id", sa.String(length=64), nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["attempt_id"], ["attempts.id"], name=op.f("fk_review_links_attempt_id_attempts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_links")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_review_links_token_sha256")),
    )
    with op.batch_alter_table("review_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_links_attempt_id"), ["attempt_id"], unique=False)

    op.create_table(
        "examiner_attempts",
        sa.Column("examiner", sa.String(length=128), nullable=False),
        sa.Column("attempt_id", sa.String(length=64), nullable=False),
        sa.Column("exam_day_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["attempt_id"], ["attempts.id"], name=op.f("fk_examiner_attempts_attempt_id_attempts")),
        sa.PrimaryKeyConstraint("examiner", "attempt_id", name=op.f("pk_examiner_attempts")),
    )
    with op.batch_alter_table("examiner_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_examiner_attempts_attempt_id"), ["attempt_id"], unique=False)
        batch_op.create_index("ix_examiner_attempts_order", ["examiner", "exam_day_id", "attempt_id"], unique=False)
    op.execute(
        "INSERT INTO examiner_attempts (examiner, attempt_id, exam_day_id) "
        "SELECT DISTINCT m.examiner, m.attempt_id, a.exam_day_id "
        "FROM mark_events m JOIN attempts a ON a.id = m.attempt_id"
    )
    create_triggers()


def downgrade() -> None:
    drop_triggers()
    with op.batch_alter_table("examiner_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_examiner_attempts_order")
        batch_op.drop_index(batch_op.f("ix_examiner_attempts_attempt_id"))
    op.drop_table("examiner_attempts")
    with op.batch_alter_table("review_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_links_attempt_id"))
    op.drop_table("review_links")
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_holds_attempt_id"))
    op.drop_table("legal_holds")
    op.drop_table("retention_policies")
    with op.batch_alter_table("mark_events", schema=None) as batch_op:
        batch_op.drop_index("ix_mark_events_examiner_attempt")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_attempts_id_day")
        batch_op.drop_index("ix_attempts_task_day")
        batch_op.drop_index("ix_attempts_station_day")
        batch_op.drop_index("ix_attempts_day_order")
    with op.batch_alter_table("export_packages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_packages_request_id"))
    op.drop_table("export_packages")
    with op.batch_alter_table("export_request_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_request_attempts_attempt_id"))
        batch_op.drop_index(batch_op.f("ix_export_request_attempts_request_id"))
    op.drop_table("export_request_attempts")
    op.drop_table("export_requests")
