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


def downgrade() -> None:
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
