"""dayplan: exam days set up in the browser (plan, stations, candidate list, slots, uploads), closed days, media checks

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _day_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["exam_day_id"], ["exam_days.id"], name=op.f(f"fk_{table}_exam_day_id_exam_days"),
                                   ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "day_plans",
        sa.Column("exam_day_id", sa.Integer(), nullable=False),
        sa.Column("specialty_id", sa.Integer(), nullable=False),
        sa.Column("reading_s", sa.Integer(), nullable=False),
        sa.Column("performing_s", sa.Integer(), nullable=False),
        sa.Column("changeover_s", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.String(length=5), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("fixed_at", sa.DateTime(), nullable=True),
        sa.Column("fixed_by", sa.String(length=200), nullable=True),
        _day_fk("day_plans"),
        sa.ForeignKeyConstraint(["specialty_id"], ["specialties.id"],
                                name=op.f("fk_day_plans_specialty_id_specialties")),
        sa.PrimaryKeyConstraint("exam_day_id", name=op.f("pk_day_plans")),
    )
    op.create_table(
        "day_stations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exam_day_id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("checklist", sa.String(length=64), nullable=False),
        _day_fk("day_stations"),
        sa.ForeignKeyConstraint(["station_id"], ["stations.id"], name=op.f("fk_day_stations_station_id_stations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_day_stations")),
        sa.UniqueConstraint("exam_day_id", "station_id", name="uq_day_stations_day_station"),
    )
    op.create_index(op.f("ix_day_stations_exam_day_id"), "day_stations", ["exam_day_id"])
    op.create_table(
        "day_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exam_day_id", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("starts_at", sa.String(length=5), nullable=True),
        _day_fk("day_candidates"),
        sa.ForeignKeyConstraint(["candidate_id"], ["candidates.id"],
                                name=op.f("fk_day_candidates_candidate_id_candidates")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_day_candidates")),
        sa.UniqueConstraint("exam_day_id", "candidate_id", name="uq_day_candidates_day_candidate"),
    )
    op.create_index(op.f("ix_day_candidates_exam_day_id"), "day_candidates", ["exam_day_id"])
    op.create_table(
        "day_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exam_day_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.String(length=64), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("reading_starts_at", sa.DateTime(), nullable=False),
        sa.Column("reading_s", sa.Integer(), nullable=False),
        sa.Column("performing_s", sa.Integer(), nullable=False),
        _day_fk("day_slots"),
        sa.ForeignKeyConstraint(["station_id"], ["stations.id"], name=op.f("fk_day_slots_station_id_stations")),
        sa.ForeignKeyConstraint(["candidate_id"], ["candidates.id"], name=op.f("fk_day_slots_candidate_id_candidates")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_day_slots")),
        sa.UniqueConstraint("attempt_id", name=op.f("uq_day_slots_attempt_id")),
    )
    op.create_index(op.f("ix_day_slots_exam_day_id"), "day_slots", ["exam_day_id"])
    op.create_index(op.f("ix_day_slots_station_id"), "day_slots", ["station_id"])
    op.create_index(op.f("ix_day_slots_reading_starts_at"), "day_slots", ["reading_starts_at"])
    op.create_table(
        "candidate_uploads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exam_day_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _day_fk("candidate_uploads"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidate_uploads")),
    )
    op.create_index(op.f("ix_candidate_uploads_exam_day_id"), "candidate_uploads", ["exam_day_id"])
    op.create_table(
        "day_closures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exam_day_id", sa.Integer(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=False),
        sa.Column("closed_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("reopened_at", sa.DateTime(), nullable=True),
        sa.Column("reopened_by", sa.String(length=200), nullable=True),
        sa.Column("reopen_reason", sa.Text(), nullable=True),
        _day_fk("day_closures"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_day_closures")),
    )
    op.create_index(op.f("ix_day_closures_exam_day_id"), "day_closures", ["exam_day_id"])
    op.create_table(
        "day_media_checks",
        sa.Column("exam_day_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("started_by", sa.String(length=200), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("max_fragment_id", sa.Integer(), nullable=False),
        sa.Column("fragments_total", sa.Integer(), nullable=False),
        sa.Column("fragments_done", sa.Integer(), nullable=False),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.JSON(), nullable=False),
        _day_fk("day_media_checks"),
        sa.PrimaryKeyConstraint("exam_day_id", name=op.f("pk_day_media_checks")),
    )


def downgrade() -> None:
    op.drop_table("day_media_checks")
    op.drop_index(op.f("ix_day_closures_exam_day_id"), table_name="day_closures")
    op.drop_table("day_closures")
    op.drop_index(op.f("ix_candidate_uploads_exam_day_id"), table_name="candidate_uploads")
    op.drop_table("candidate_uploads")
    for name in ("reading_starts_at", "station_id", "exam_day_id"):
        op.drop_index(op.f(f"ix_day_slots_{name}"), table_name="day_slots")
    op.drop_table("day_slots")
    op.drop_index(op.f("ix_day_candidates_exam_day_id"), table_name="day_candidates")
    op.drop_table("day_candidates")
    op.drop_index(op.f("ix_day_stations_exam_day_id"), table_name="day_stations")
    op.drop_table("day_stations")
    op.drop_table("day_plans")
