"""job_tasks indexes for claims whatever the planner's statistics, and for fewer writes

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05

A task is written three times (queued, active, finished) and, its status changing, no write
is a HOT update: each inserts into every index of job_tasks. The fair-share claim index
needs only waiting tasks, the reaper's only leased ones, the token lookup only tasks holding
a token, the creator lookup only tasks that have a creator: 6 to 9 of a task's 30 index
insertions are left out. SQLite keeps whole indexes (its planner cannot prove a status
list from one status).

(job_id, status) gives way to (job_id, node_name) of active tasks only, on both stores: a
claim's lower-sequence check could take (job_id, status) when planned on a small table and
read every task of the job per candidate, for as long as PostgreSQL kept that plan cached.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# (index, columns, the rows it holds).
_PARTIAL = (
    (
        "ix_job_tasks_status_owner_uuid_id",
        ["status", "owner_uuid", "id"],
        "status IN ('queued', 'soft-failed')",
    ),
    ("ix_job_tasks_lease_expires_at", ["lease_expires_at"], "lease_expires_at IS NOT NULL"),
    ("ix_job_tasks_token_digest", ["token_digest"], "token_digest IS NOT NULL"),
    (
        "ix_job_tasks_created_by",
        ["created_by_job_task_uuid"],
        "created_by_job_task_uuid IS NOT NULL",
    ),
)


_ACTIVE = "status = 'active'"


def upgrade() -> None:
    op.drop_index("ix_job_tasks_job_id_status", table_name="job_tasks")
    op.create_index(
        "ix_job_tasks_active_job_id",
        "job_tasks",
        ["job_id", "node_name"],
        postgresql_where=text(_ACTIVE),
        sqlite_where=text(_ACTIVE),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, columns, rows in _PARTIAL:
        op.drop_index(name, table_name="job_tasks")
        op.create_index(name, "job_tasks", columns, postgresql_where=text(rows))


def downgrade() -> None:
    op.drop_index("ix_job_tasks_active_job_id", table_name="job_tasks")
    op.create_index("ix_job_tasks_job_id_status", "job_tasks", ["job_id", "status"])
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, columns, _ in _PARTIAL:
        op.drop_index(name, table_name="job_tasks")
        op.create_index(name, "job_tasks", columns)
