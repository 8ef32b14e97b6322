"""scheduling: retry backoff, failure reasons, the job blocklist, fair share's index

job_tasks.runnable_after (a soft-failed task waits until then), job_tasks.failure_reason and
jobs.failure_reason (why a task, and so its job, failed for good), jobs.blocklist (workers
that get no more of the job's tasks), and the (status, owner_uuid, id) index a fair-share
claim walks per owner.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("job_tasks") as batch_op:
        batch_op.add_column(sa.Column("runnable_after", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("failure_reason", Json))
        batch_op.create_index(
            "ix_job_tasks_status_owner_uuid_id", ["status", "owner_uuid", "id"], unique=False
        )
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("failure_reason", Json))
        batch_op.add_column(sa.Column("blocklist", Json))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("blocklist")
        batch_op.drop_column("failure_reason")
    with op.batch_alter_table("job_tasks") as batch_op:
        batch_op.drop_index("ix_job_tasks_status_owner_uuid_id")
        batch_op.drop_column("failure_reason")
        batch_op.drop_column("runnable_after")
