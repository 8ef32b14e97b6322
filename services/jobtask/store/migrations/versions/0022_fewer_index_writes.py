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
- ix_job_tasks_active_job_id gains the status column, constant in it, so that it covers a
  count of active tasks (SQLite counted them through every task's job index otherwise).
- SQLite's task indexes are partial as PostgreSQL's are (0020): an INSERT writes no entry for
  a task without lease, token or creator, a claim none into the waiting tasks' owner index.
- ix_jobs_queue (status, priority, created_at) goes: ix_jobs_fair (status, priority, ...)
  serves the claims' probe for the next priority level with the same prefix, and no read
  orders jobs by created_at within a status.
- No fillfactor: no write of job_tasks can be HOT (each changes modified_at or the status,
  both indexed); on jobs a fillfactor of 90 made count shifts no more often HOT in a
  measurement (2,000 jobs, 22,000 shifts, five runs each: 32 to 75 % HOT against 25 to
  75 % at 100) -- pruning, which other sessions' snapshots hold back, decides it.
"""

from __future__ import annotations

from typing import NamedTuple

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
_WAITING = "status IN ('queued', 'soft-failed')"
_ACTIVE = "status = 'active'"
_LEASED = "lease_expires_at IS NOT NULL"
_TOKENED = "token_digest IS NOT NULL"
_CREATED = "created_by_job_task_uuid IS NOT NULL"


class _Change(NamedTuple):
    """One index of job_tasks before and after (rows: its condition, None for all rows)."""

    name: str
    columns: list[str]
    columns_after: list[str]
    sqlite_rows: str | None
    postgres_rows: str | None
    rows_after: str

    def before(self, postgres: bool) -> tuple[list[str], str | None]:
        return self.columns, self.postgres_rows if postgres else self.sqlite_rows

    def after(self) -> tuple[list[str], str | None]:
        return self.columns_after, self.rows_after


_ACTIVE_COLUMNS = ["job_id", "node_name"]
_CHANGES = (
    _Change(
        "ix_job_tasks_active_job_id",
        _ACTIVE_COLUMNS,
        [*_ACTIVE_COLUMNS, "status"],
        _ACTIVE,
        _ACTIVE,
        _ACTIVE,
    ),
    _Change(
        "ix_job_tasks_status_id",
        ["status", "id"],
        ["status", "id"],
        None,
        None,
        _NOT_RUNNING_OR_DONE,
    ),
    _Change(
        "ix_job_tasks_status_owner_uuid_id",
        ["status", "owner_uuid", "id"],
        ["status", "owner_uuid", "id"],
        None,
        _WAITING,
        _WAITING,
    ),
    _Change(
        "ix_job_tasks_lease_expires_at",
        ["lease_expires_at"],
        ["lease_expires_at"],
        None,
        _LEASED,
        _LEASED,
    ),
    _Change(
        "ix_job_tasks_token_digest", ["token_digest"], ["token_digest"], None, _TOKENED, _TOKENED
    ),
    _Change(
        "ix_job_tasks_created_by",
        ["created_by_job_task_uuid"],
        ["created_by_job_task_uuid"],
        None,
        _CREATED,
        _CREATED,
    ),
)


def _remake(
    name: str, old: tuple[list[str], str | None], new: tuple[list[str], str | None]
) -> None:
    """The index made again as `new` (columns, rows), unless it is that already."""
    if old == new:
        return
    op.drop_index(name, table_name="job_tasks")
    columns, rows = new
    where = None if rows is None else text(rows)
    op.create_index(name, "job_tasks", columns, postgresql_where=where, sqlite_where=where)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_jobs_queue", table_name="jobs")
    for change in _CHANGES:
        _remake(change.name, change.before(postgres), change.after())


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for change in _CHANGES:
        _remake(change.name, change.after(), change.before(postgres))
    op.create_index("ix_jobs_queue", "jobs", ["status", "priority", "created_at"])
