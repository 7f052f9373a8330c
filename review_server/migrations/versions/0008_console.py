"""console: each station's last status report (the stations board); Ministry requests' question and sending

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "station_status",
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["station_id"], ["stations.id"], name=op.f("fk_station_status_station_id_stations")),
        sa.PrimaryKeyConstraint("station_id", name=op.f("pk_station_status")),
    )
    with op.batch_alter_table("export_requests") as batch:
        batch.add_column(sa.Column("asked_number", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("asked_day", sa.Date(), nullable=True))
        batch.add_column(sa.Column("asked_stage", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("sent_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("sent_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("sent_note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_requests") as batch:
        for name in ("sent_note", "sent_by", "sent_at", "asked_stage", "asked_day", "asked_number"):
            batch.drop_column(name)
    op.drop_table("station_status")
