"""Trust: keys get an owner, a scope and a revocation time; datasets, jobs, models and evaluations get a
`deleted_at` mark (set before their files go, so recovery can finish a deletion a crash interrupted); and the
resources created by POSTs sent with an Idempotency-Key are remembered for 24 h.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARKED = ("datasets", "jobs", "model_versions", "evaluations")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("owner", sa.String(64)))
        batch.add_column(sa.Column("scope", sa.String(10), nullable=False, server_default="train"))
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True)))
        batch.create_index("ix_api_keys_owner", ["owner"])
    for table in MARKED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True)))
    op.create_table(
        "idempotent_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(20), nullable=False),
        sa.Column("resource_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner", "key"),
    )
    op.create_index("ix_idempotent_requests_created_at", "idempotent_requests", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotent_requests_created_at", "idempotent_requests")
    op.drop_table("idempotent_requests")
    for table in MARKED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("deleted_at")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_owner")
        batch.drop_column("revoked_at")
        batch.drop_column("scope")
        batch.drop_column("owner")
