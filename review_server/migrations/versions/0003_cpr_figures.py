"""cpr figures: a station's CPR figures report per attempt

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cpr_figures",
        sa.Column("attempt_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uploaded_by", sa.String(length=80), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["attempt_id"], ["attempts.id"], name=op.f("fk_cpr_figures_attempt_id_attempts")),
        sa.PrimaryKeyConstraint("attempt_id", name=op.f("pk_cpr_figures")),
    )


def downgrade() -> None:
    op.drop_table("cpr_figures")
