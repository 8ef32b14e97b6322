"""the worker registry: workers' tags, slots, first sight and goodbye; attempts by worker

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("workers") as batch_op:
        batch_op.add_column(sa.Column("tags", json, nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("slots", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("first_seen_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("stopped_at", sa.DateTime(timezone=True)))
    with op.batch_alter_table("task_attempts") as batch_op:
        batch_op.create_index(
            "ix_task_attempts_worker_id_outcome", ["worker_id", "outcome"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("task_attempts") as batch_op:
        batch_op.drop_index("ix_task_attempts_worker_id_outcome")
    with op.batch_alter_table("workers") as batch_op:
        batch_op.drop_column("stopped_at")
        batch_op.drop_column("first_seen_at")
        batch_op.drop_column("slots")
        batch_op.drop_column("tags")
