"""access: audit bursts (one audit row per burst of refusals); examiners' tablet credentials; mark proofs

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_bursts",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("first_at", sa.DateTime(), nullable=False),
        sa.Column("last_at", sa.DateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_audit_bursts")),
    )
    op.create_table(
        "tablet_credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("exam_day_id", sa.Integer(), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("roster_entry", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.DateTime(), nullable=False),
        sa.Column("valid_until", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("replaced_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_tablet_credentials_user_id_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["station_id"], ["stations.id"],
                                name=op.f("fk_tablet_credentials_station_id_stations")),
        sa.ForeignKeyConstraint(["exam_day_id"], ["exam_days.id"],
                                name=op.f("fk_tablet_credentials_exam_day_id_exam_days")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tablet_credentials")),
        sa.UniqueConstraint("key_id", name=op.f("uq_tablet_credentials_key_id")),
    )
    op.create_index(op.f("ix_tablet_credentials_user_id"), "tablet_credentials", ["user_id"])
    op.create_index(op.f("ix_tablet_credentials_station_id"), "tablet_credentials", ["station_id"])
    with op.batch_alter_table("mark_events") as batch:
        batch.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("signature", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mark_events") as batch:
        batch.drop_column("signature")
        batch.drop_column("key_id")
    op.drop_table("tablet_credentials")
    op.drop_table("audit_bursts")
