"""Datasets keep the class aliases and label map they were uploaded (or re-labelled) with, so a re-conversion
applies them; jobs keep the warnings found when they were resolved (e.g. objects too small for the input size).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("class_aliases", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("requested_label_map", sa.JSON(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("warnings", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("warnings")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("requested_label_map")
        batch.drop_column("class_aliases")
