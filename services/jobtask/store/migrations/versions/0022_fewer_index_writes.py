"""Fewer index writes per task and per job, on both stores

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05

A task is written three times (queued, active, finished), each time into every index that
holds its new row version (PostgreSQL: every index of job_tasks, a status change being
never a HOT update; SQLite: each index whose key or condition the write changes).

- ix_job_tasks_status_id holds no active or completed task: the claims walk waiting tasks,
  listings filter on the statuses a task ends in otherwise. A task that completes is written
  into it once, not three times.
- SQLite's task indexes are partial as PostgreSQL's are (0020): an INSERT writes no entry for
  a task without lease, token or creator, a claim none into the waiting tasks' owner index.
- ix_jobs_queue (status, priority, created_at) goes: ix_jobs_fair (status, priority, ...)
  serves the claims' probe for the next priority level with the same prefix, and no read
  orders jobs by created_at within a status.
- PostgreSQL: jobs get fillfactor 90, so that shifting a job's task counts (no indexed
  column) can be a HOT update in the job's own page. ALTER TABLE ... SET (fillfactor) only
  applies to pages written from now on; `VACUUM FULL jobs` (or pg_repack) rewrites the old.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_NOT_RUNNING_OR_DONE = (
    "status = 'queued' OR status = 'soft-failed' OR status = 'failed'"
    " OR status = 'canceled' OR status = 'paused'"
)
# (index, columns, rows before on SQLite (None: all), before on PostgreSQL, after on both).
_TASK_INDEXES = (
    ("ix_job_tasks_status_id", ["status", "id"], None, None, _NOT_RUNNING_OR_DONE),
    (
        "ix_job_tasks_status_owner_uuid_id",
        ["status", "owner_uuid", "id"],
        None,
        "status IN ('queued', 'soft-failed')",
        "status IN ('queued', 'soft-failed')",
    ),
    (
        "ix_job_tasks_lease_expires_at",
        ["lease_expires_at"],
        None,
        "lease_expires_at IS NOT NULL",
        "lease_expires_at IS NOT NULL",
    ),
    (
        "ix_job_tasks_token_digest",
        ["token_digest"],
        None,
        "token_digest IS NOT NULL",
        "token_digest IS NOT NULL",
    ),
    (
        "ix_job_tasks_created_by",
        ["created_by_job_task_uuid"],
        None,
        "created_by_job_task_uuid IS NOT NULL",
        "created_by_job_task_uuid IS NOT NULL",
    ),
)


def _create(name: str, columns: list[str], rows: str | None) -> None:
    where = None if rows is None else text(rows)
    op.create_index(name, "job_tasks", columns, postgresql_where=where, sqlite_where=where)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_jobs_queue", table_name="jobs")
    for name, columns, sqlite_before, postgres_before, after in _TASK_INDEXES:
        if (postgres_before if postgres else sqlite_before) == after:
            continue
        op.drop_index(name, table_name="job_tasks")
        _create(name, columns, after)
    if postgres:
        op.execute("ALTER TABLE jobs SET (fillfactor = 90)")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE jobs RESET (fillfactor)")
    for name, columns, sqlite_before, postgres_before, after in _TASK_INDEXES:
        before = postgres_before if postgres else sqlite_before
        if before == after:
            continue
        op.drop_index(name, table_name="job_tasks")
        _create(name, columns, before)
    op.create_index("ix_jobs_queue", "jobs", ["status", "priority", "created_at"])
