"""Initial tables: api_keys, datasets, jobs, job_events, model_versions (as in core/tables.py).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_index("ix_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)

    op.create_table(
        "datasets",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64)),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("format", sa.String(20), nullable=False),
        sa.Column("val_fraction", sa.Float(), nullable=False),
        sa.Column("upload_bytes", sa.Integer(), nullable=False),
        sa.Column("num_images", sa.Integer()),
        sa.Column("num_boxes", sa.Integer()),
        sa.Column("label_map", sa.JSON()),
        sa.Column("report", sa.JSON()),
        sa.Column("progress", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_index("ix_datasets_owner", "datasets", ["owner"])
    op.create_index("ix_datasets_status", "datasets", ["status"])

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64)),
        sa.Column("dataset_id", sa.String(32), sa.ForeignKey("datasets.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("model_name", sa.String(50), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("progress", sa.JSON()),
        sa.Column("metrics", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200)),
        sa.Column("heartbeat_at", _TIME),
        sa.Column("model_id", sa.String(32)),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("started_at", _TIME),
        sa.Column("finished_at", _TIME),
    )
    op.create_index("ix_jobs_dataset_id", "jobs", ["dataset_id"])
    op.create_index("ix_jobs_owner", "jobs", ["owner"])
    op.create_index("ix_jobs_status", "jobs", ["status"])

    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])

    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64)),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("metrics", sa.JSON()),
        sa.Column("label_map", sa.JSON()),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_index("ix_model_versions_job_id", "model_versions", ["job_id"])
    op.create_index("ix_model_versions_owner", "model_versions", ["owner"])


def downgrade() -> None:
    for table in ("model_versions", "job_events", "jobs", "datasets", "api_keys"):
        op.drop_table(table)
