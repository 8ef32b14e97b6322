"""SQLite: the job and task rows this process's write transactions ended with, kept so that
the next transaction that needs them need not read them again -- a report group's
completion (locks.lock_pairs) finds the rows its tasks' claim wrote moments before in the
same process, and a claim (locks.lock_job_then_others, try_lock_jobs) the rows of the jobs
submitted before it (reading them back, and building their JobRow/TaskRow, was ~15 % of a
one-task job's drain in instructions: bench/README.md, 2026-12-06, rowcache lane).

Why a kept row is the database's row (each a rule the code below keeps):

1. Rows kept are rows as written: a TaskWrites knows each task row and each moved job row it
   writes without reading them back (rows.task_after / job_after of a row read, or kept, in
   the same transaction: task_writes.TaskWrites), settle_written knows its jobs' rows as
   they now are, and a submission its new jobs' rows as inserted (their JSON columns
   as the codec reads their stored text back: inserted_jobs). Nothing else is kept.
2. Every row change of a write transaction on this process's write connection is accounted
   for: SQLite counts the rows a connection changes (sqlite3's `total_changes`), and a
   transaction's count must equal what its known writers changed -- each flush of a
   TaskWrites (every job_tasks and jobs row it changed is noted, with its row or to be
   dropped), a submission's inserts (new rows), and the blocks marked `other_tables` (rows of
   no cached table: a worker's liveness). A transaction whose count differs wrote something
   else: the whole cache is dropped at its end. So is it after a rollback, a migration
   (ddl), any use of the write connection outside a write transaction, or a rolled-back
   savepoint (which undoes changes already counted); and kept rows are replaced only once
   the transaction committed.
3. Other connections -- other processes on the file (replicas), this process's own readers,
   a script -- are seen by SQLite's `PRAGMA data_version`, which changes when any other
   connection committed: the cache is stamped with its write connection and that value (read
   inside a write transaction, under the file's write lock), and used, or added to, only
   while the same connection still reads the same value.
4. A transaction uses kept rows only while every change it made so far is accounted for,
   and its own noted rows before kept ones (rows it wrote are not in the cache until it
   commits); lock_pairs, only before it changed any row.

Not every row written is kept: a finished task's is dropped, and so is one whose log or output
is longer than KEEP_TEXT (small_enough: an active task's log tail runs to 64 KiB), and the
oldest beyond MAX_ROWS. PostgreSQL keeps task rows by other rules (jobtask.store.kept_tasks:
its rows are locked by several writers at once, and a kept one is checked by its version and
lease columns as it is locked).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from jobtask.domain.statuses import JOB_TERMINAL, TASK_UNFINISHED
from jobtask.store import json_codec
from jobtask.store.rows import JobRow, TaskRow
from jobtask.store.schema import jobs
from sqlalchemy import JSON, Connection
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "KEY",
    "RowCache",
    "Tracked",
    "as_read",
    "inserted_jobs",
    "noted_jobs",
    "other_tables",
    "tracked",
]

# conn.info's key of the write transaction's Tracked (SQLite only).
KEY = "jobtask.row_cache"
# Rows kept at most, of each table: a server's tasks in flight (a worker's slots each);
# the oldest go first (a miss only reads the rows).
MAX_ROWS = 10_000
# The longest log and output a kept task row holds, in characters (see small_enough).
KEEP_TEXT = 1024


class RowCache:
    """One SQLite Database's kept rows: tasks by uuid, jobs by id, valid for one write
    connection while its data_version reads `version` (rule 3)."""

    __slots__ = ("conn", "hits", "jobs", "misses", "tasks", "version")

    def __init__(self) -> None:
        self.tasks: dict[str, TaskRow] = {}
        self.jobs: dict[int, JobRow] = {}
        self.conn: Any = None
        self.version = -1
        # Lookups answered and not (lock_pairs), for benchmarks and tests.
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self.tasks.clear()
        self.jobs.clear()
        self.conn = None

    def begin(self, sync_conn: Connection) -> Tracked:
        """A write transaction on sync_conn begins (BEGIN IMMEDIATE done)."""
        return Tracked(self, sync_conn.connection.dbapi_connection)


class Tracked:
    """One write transaction's account of its row changes and of the rows it wrote."""

    __slots__ = ("_version", "cache", "dbapi", "jobs", "known", "start", "tasks")

    def __init__(self, cache: RowCache, dbapi: Any) -> None:
        self.cache = cache
        self.dbapi = dbapi
        self.start: int = dbapi.total_changes
        # Rows changed by the known writers (rule 2).
        self.known = 0
        # The rows as this transaction leaves them: a task's row, a job's row or None (a
        # job changed whose row is not known: dropped).
        self.tasks: dict[str, TaskRow] = {}
        self.jobs: dict[int, JobRow | None] = {}
        self._version: int | None = None

    def spoil(self) -> None:
        """Something undid changes already counted (a savepoint rolled back): nothing of
        this transaction can be accounted for."""
        self.known = -1

    def changes(self) -> int:
        return int(self.dbapi.total_changes)

    def _data_version(self) -> int:
        # Read under the write lock: no other connection can commit until this one ends.
        if self._version is None:
            self._version = int(self.dbapi.execute("PRAGMA data_version").fetchone()[0])
        return self._version

    def valid(self) -> bool:
        cache = self.cache
        if cache.conn is self.dbapi and cache.version == self._data_version():
            return True
        cache.clear()
        return False

    def written(
        self,
        before: int,
        tasks: Iterable[TaskRow],
        jobs: Mapping[int, JobRow | None],
    ) -> None:
        """A known writer changed rows since the count read `before`: these task rows and
        these jobs (a row, or None when its row is not known)."""
        self.known += self.changes() - before
        for task in tasks:
            self.tasks[task.uuid] = task
        self.jobs.update(jobs)

    def kept_jobs(self, ids: Collection[int]) -> dict[int, JobRow] | None:
        """Jobs' rows by id, as they now are in this transaction: its own (a known writer's,
        rule 2) or else kept ones; None unless every one is known, every change of the
        transaction so far is accounted for, and the cache is valid (then the caller reads
        them). For a claim, whose first writes are the workers table's."""
        cache = self.cache
        kept = cache.jobs
        if not kept or self.changes() - self.start != self.known:
            cache.misses += 1
            return None
        own = self.jobs
        out: dict[int, JobRow] = {}
        for job_id in ids:
            job = own[job_id] if job_id in own else kept.get(job_id)
            if job is None:
                cache.misses += 1
                return None
            out[job_id] = job
        if not self.valid():
            cache.misses += 1
            return None
        cache.hits += 1
        return out

    def pairs(self, uuids: Collection[str]) -> list[tuple[JobRow, TaskRow]] | None:
        """locks.lock_pairs's answer from kept rows: (job, task) for each uuid, in (job id,
        task id) order, one JobRow per job; None unless every task and its job is kept and
        the cache is valid (then the caller reads them)."""
        cache = self.cache
        kept_tasks = cache.tasks
        if not kept_tasks or self.changes() != self.start:  # (rule 4)
            cache.misses += 1
            return None
        kept_jobs = cache.jobs
        out: list[tuple[JobRow, TaskRow]] = []
        for uuid in uuids:
            task = kept_tasks.get(uuid)
            job = None if task is None else kept_jobs.get(task.job_id)
            if job is None or task is None:
                cache.misses += 1
                return None
            out.append((job, task))
        if not self.valid():
            cache.misses += 1
            return None
        cache.hits += 1
        out.sort(key=_pair_order)
        return out

    def before_commit(self) -> bool:
        """Whether every row change was a known writer's (rule 2); if rows are to be kept,
        the stamp is read now, before the commit lets other processes write."""
        # (Still in the transaction BEGIN IMMEDIATE opened: nothing ended it midway.)
        if self.changes() - self.start != self.known or not self.dbapi.in_transaction:
            return False
        if self.tasks or self.jobs:
            self._data_version()
        return True

    def committed(self, accounted: bool) -> None:
        """After the commit: the rows written are kept (or the cache dropped)."""
        cache = self.cache
        if not accounted:
            cache.clear()
            return
        if not (self.tasks or self.jobs):
            return
        if not self.valid():
            cache.conn = self.dbapi
            cache.version = self._data_version()
        kept_tasks = cache.tasks
        for uuid, task in self.tasks.items():
            if task.status in TASK_UNFINISHED and small_enough(task):
                kept_tasks[uuid] = task
            else:
                kept_tasks.pop(uuid, None)
        kept_jobs = cache.jobs
        for job_id, job in self.jobs.items():
            if job is None or job.status in JOB_TERMINAL:
                kept_jobs.pop(job_id, None)
            else:
                kept_jobs[job_id] = job
        trim(kept_tasks, MAX_ROWS)
        trim(kept_jobs, MAX_ROWS)


def small_enough(task: TaskRow) -> bool:
    """Whether a task's row is small enough to keep: an active task's log tail runs to 64 KiB,
    and MAX_ROWS of them would hold 640 MB; a longer one is read when needed, as before."""
    return len(task.log or "") <= KEEP_TEXT and len(task.output or "") <= KEEP_TEXT


def trim(rows: dict[Any, Any], limit: int) -> None:
    """Drops the oldest rows (the first inserted) beyond `limit`, in one pass: a dict's
    deleted entries stay at the front of its table until it is rebuilt, and each
    `next(iter(rows))` walked past all of them again (~11 us a row dropped, a submission
    of 100 over 10,000 kept; 0.8 in one pass)."""
    excess = len(rows) - limit
    if excess > 0:
        for key in list(itertools.islice(rows, excess)):
            del rows[key]


def _pair_order(pair: tuple[JobRow, TaskRow]) -> tuple[int, int]:
    return pair[0].id, pair[1].id


def tracked(conn: AsyncConnection) -> Tracked | None:
    """The write transaction's account (SQLite), or None (PostgreSQL, a read)."""
    found: Tracked | None = conn.info.get(KEY)
    return found


def inserted_jobs(conn: AsyncConnection, before: int, jobs: Iterable[JobRow]) -> None:
    """A submission's writes since the count read `before` (tracked(conn).changes()): new
    jobs (these rows as inserted), their seed tasks and events. New rows, so no kept row is
    stale for them; each job is kept as reading it back gives it (as_read)."""
    account = tracked(conn)
    if account is not None:
        account.written(before, (), {job.id: as_read(job) for job in jobs})


# The jobs table's JSON columns (JSONB on PostgreSQL: a variant of JSON).
_JOB_JSON = tuple(c.name for c in jobs.c if isinstance(c.type, JSON))


def as_read(job: JobRow) -> JobRow:
    """A job's row as given to its INSERT, as reading it back gives it: each JSON column's
    value is stored as json_codec.dumps' text and read back by json_codec.loads (the
    engine's serializer and deserializer), so the kept value is that round trip, not the
    value given -- the same value type for type for what a client can send (strings,
    finite floats, bools, None, lists, objects), and for anything else what a read gives
    (a tuple comes back a list, an int key a str one). Empty values are their own round
    trip (a few us a column saved for most jobs)."""
    read = {
        name: json_codec.loads(json_codec.dumps(value))
        for name in _JOB_JSON
        if (value := getattr(job, name))
    }
    return dataclasses.replace(job, **read) if read else job


def noted_jobs(conn: AsyncConnection, jobs: Iterable[JobRow]) -> None:
    """Jobs' rows as they now are, in this transaction (lifecycle.settle_written's): kept
    at its commit unless a later write changes them (rule 1)."""
    account = tracked(conn)
    if account is not None:
        account.jobs.update((job.id, job) for job in jobs)


@contextlib.contextmanager
def other_tables(conn: AsyncConnection) -> Iterator[None]:
    """A block whose statements change rows of no cached table (jobs, job_tasks): its
    changes are known (rule 2)."""
    account = tracked(conn)
    before = 0 if account is None else account.changes()
    yield
    if account is not None:
        account.known += account.changes() - before
