"""index job_tasks.token_digest: calls made with a task's own token look it up

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-21
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_tasks") as batch_op:
        batch_op.create_index("ix_job_tasks_token_digest", ["token_digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_tasks") as batch_op:
        batch_op.drop_index("ix_job_tasks_token_digest")
