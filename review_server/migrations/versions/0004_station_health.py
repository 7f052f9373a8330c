"""station health: health events (a station's warnings with their start and end); recordings.media_from

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "health_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("attempt_id", sa.String(length=64), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("text", sa.String(length=300), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["station_id"], ["stations.id"], name=op.f("fk_health_events_station_id_stations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_events")),
        sa.UniqueConstraint("station_id", "event_id", name="uq_health_events_station_event"),
    )
    op.create_index(op.f("ix_health_events_station_id"), "health_events", ["station_id"])
    op.create_index(op.f("ix_health_events_attempt_id"), "health_events", ["attempt_id"])
    op.create_index(op.f("ix_health_events_started_at"), "health_events", ["started_at"])
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("media_from", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("media_from")
    op.drop_table("health_events")
