"""PostgreSQL: the task rows this process's write transactions committed, kept so that a
report group's lock (locks.lock_pairs) need not read its tasks' rows whole again -- it
locks them and reads their version and lease columns only, and takes the rest from here.
A claim of 50 tasks reads their rows, writes them, and moments later a report group locks
the same rows: reading each again (32 columns, asyncpg's decoding and a TaskRow built from
them) cost ~7-10 us a task of the server's CPU, ~2 % (bench.group_lock; bench/README.md, the
twentieth session).

Why a kept row is the database's row when the lock's three columns match it:

1. Rows kept are rows as written: a TaskWrites' rows after its flush (rows.task_after of a
   row read under its lock, or kept, with the changes written), and they enter the cache
   only once their transaction committed (TaskWrites.flush registers them with
   database.after_commit: never from one that rolled back or runs again).
2. Every writer of job_tasks bumps `version` (TaskWrites, task_writes.write_tasks_of_job),
   except the lease writers, which write only lease columns: renewals `lease_expires_at`
   (jobtask.store.leases), a released lease `lease_id`, `lease_expires_at` and
   `token_digest` (jobtask.store.attempts) -- and a lease never comes back with the same id.
   So a row whose version, lease id and lease end are the kept row's has not been written
   since, by this process or any other (replicas, a script going through the store), and is
   used as kept; any difference, or a task not kept, reads every row of the lock whole.
   tests/core/test_kept_tasks.py fails if a writer breaks this.
3. A finished task's row is dropped (no report group locks it again), as are the oldest
   beyond MAX_ROWS, and a row whose log or output is longer than row_cache.KEEP_TEXT
   characters is not kept (row_cache.small_enough: an active task's log tail runs to 64 KiB,
   10,000 of them would hold 640 MB; such a row is read whole, as before).

SQLite has its own, stricter account (jobtask.store.row_cache): its one writer can count
every row change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from jobtask.domain.statuses import TASK_UNFINISHED
from jobtask.store.row_cache import MAX_ROWS, small_enough, trim
from jobtask.store.rows import TaskRow
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["KEY", "KeptTasks", "kept"]

# conn.info's key of its Database's KeptTasks (PostgreSQL write transactions only).
KEY = "jobtask.kept_tasks"


class KeptTasks:
    """One PostgreSQL Database's kept task rows, by uuid."""

    __slots__ = ("hits", "misses", "rows")

    def __init__(self) -> None:
        self.rows: dict[str, TaskRow] = {}
        # Lookups answered and not (lock_pairs), for benchmarks and tests.
        self.hits = 0
        self.misses = 0

    def have(self, uuids: Collection[str]) -> bool:
        """Whether every one of these tasks is kept (else lock_pairs reads them whole)."""
        rows = self.rows
        if all(uuid in rows for uuid in uuids):
            return True
        self.misses += 1
        return False

    def checked(
        self, uuid: str, version: int, lease_id: Any, lease_expires_at: Any
    ) -> TaskRow | None:
        """The kept row of a task whose row, locked, reads these columns (rule 2); None if
        it is not kept, or not as kept."""
        row = self.rows.get(uuid)
        if (
            row is None
            or row.version != version
            or row.lease_id != lease_id
            or row.lease_expires_at != lease_expires_at
        ):
            return None
        return row

    def committed(self, rows: Iterable[TaskRow]) -> None:
        """Rows a transaction wrote, now committed (rules 1 and 3)."""
        kept = self.rows
        for row in rows:
            # Taken out first, so that a row kept again goes to the end: the newest are
            # trimmed last.
            kept.pop(row.uuid, None)
            if row.status in TASK_UNFINISHED and small_enough(row):
                kept[row.uuid] = row
        trim(kept, MAX_ROWS)


def kept(conn: AsyncConnection) -> KeptTasks | None:
    """The write transaction's KeptTasks (PostgreSQL), or None (SQLite, a read)."""
    found: KeptTasks | None = conn.info.get(KEY)
    return found
