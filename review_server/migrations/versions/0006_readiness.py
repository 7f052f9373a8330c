"""readiness: readiness runs and checks before the exam day, and their test recordings' fragments (kept apart
from candidates' recordings)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "readiness_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readiness_runs")),
    )
    op.create_table(
        "readiness_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("items", sa.JSON(), nullable=True),
        sa.Column("media_purged_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["readiness_runs.id"],
                                name=op.f("fk_readiness_checks_run_id_readiness_runs")),
        sa.ForeignKeyConstraint(["station_id"], ["stations.id"], name=op.f("fk_readiness_checks_station_id_stations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readiness_checks")),
    )
    op.create_index(op.f("ix_readiness_checks_run_id"), "readiness_checks", ["run_id"])
    op.create_index(op.f("ix_readiness_checks_station_id"), "readiness_checks", ["station_id"])
    op.create_index(op.f("ix_readiness_checks_state"), "readiness_checks", ["state"])
    op.create_table(
        "readiness_fragments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("check_id", sa.Integer(), nullable=False),
        sa.Column("track", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["check_id"], ["readiness_checks.id"],
                                name=op.f("fk_readiness_fragments_check_id_readiness_checks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readiness_fragments")),
        sa.UniqueConstraint("check_id", "track", "seq", name="uq_readiness_fragments_place"),
    )
    op.create_index(op.f("ix_readiness_fragments_check_id"), "readiness_fragments", ["check_id"])
    op.create_index(op.f("ix_readiness_fragments_sha256"), "readiness_fragments", ["sha256"])


def downgrade() -> None:
    op.drop_table("readiness_fragments")
    op.drop_table("readiness_checks")
    op.drop_table("readiness_runs")
