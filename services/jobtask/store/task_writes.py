"""Set-based task writes: the rows a group of claims, reports and completions changes,
written with a constant number of statements whatever the group's size.

A claim of fifty tasks, or a worker session's message ending fifty of them, used to cost
each task its own UPDATE ... RETURNING, its own count shift on the job's row, its own event
INSERT and its own attempt write: about a dozen statements a task, each a round trip through
SQLAlchemy (and the network, on PostgreSQL) while the job's row is held. `TaskWrites` takes
the same writes in memory and `flush` sends them, at the driver's level
(jobtask.store.flush_sql), as

- one UPDATE of job_tasks per set of columns written (a group has one or two: "claimed",
  "reported", "completed"; two writes of one task are merged into one),
- one UPDATE of jobs shifting every job's status counts at once, and one per set of
  columns of the jobs' moves held with them (write_job: a settle's usual moves; a moved
  job's counts go out with its move, so its row is written once),
- one UPDATE closing attempts, and one INSERT opening them,
- one INSERT of the events, in the order they were taken (so each job's events keep
  their order: the caller holds every job's row until it commits):

on SQLite each an executemany, on PostgreSQL all of them ONE statement (data-modifying
CTEs fed by arrays), so a flush is one round trip while the jobs' rows are held.

The rows written are known without RETURNING: the caller holds each task's row lock, so the
task as read plus the changes (and its version plus one) is the row as written
(`rows.task_after`). Anything that reads what a TaskWrites holds (a settle reading the
job's counts, a placement counting active tasks) must run after `flush`.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from jobtask.domain.statuses import TaskStatus
from jobtask.store import attempts as attempt_store
from jobtask.store import feed, flush_sql, kept_tasks, row_cache
from jobtask.store.database import after_commit
from jobtask.store.inserts import insert_rows
from jobtask.store.rows import (
    COUNT_COLUMN,
    JobRow,
    TaskRow,
    task_after,
    task_of_columns,
    task_row,
    to_json,
)
from jobtask.store.schema import job_tasks, jobs
from sqlalchemy import Row, Table, Update, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "TaskWrites",
    "insert_tasks",
    "move_tasks",
    "recount",
    "shift_count",
    "write_task_row",
    "write_versioned",
]


@functools.lru_cache(maxsize=512)
def _versioned_update(table: Table, columns: tuple[str, ...]) -> Update:
    """UPDATE of one row of jobs or job_tasks setting `columns` (parameters v_<column>),
    bumping its version; one per table and set of columns written (a few dozen exist)."""
    return (
        update(table)
        .where(table.c.id == bindparam("v_id"))
        .values(
            {
                **{name: bindparam(f"v_{name}") for name in columns},
                "version": table.c.version + 1,
                "modified_at": bindparam("v_modified_at"),
                "modified_by_user_uuid": bindparam("v_modified_by_user_uuid"),
                "modified_by_client_uuid": bindparam("v_modified_by_client_uuid"),
            }
        )
        .returning(*table.c)
    )


async def write_versioned(
    conn: AsyncConnection,
    table: Table,
    row_id: int,
    changes: Mapping[str, Any],
    *,
    now: dt.datetime,
    user_uuid: str,
    client_uuid: str | None,
) -> Row[Any]:
    """One row of jobs or job_tasks (the caller holds its lock) written, its version
    bumped, in one UPDATE ... RETURNING: the row as written (write_task_row,
    job_writes.write_job_row)."""
    params = {f"v_{name}": value for name, value in changes.items()}
    params.update(
        v_id=row_id,
        v_modified_at=now,
        v_modified_by_user_uuid=user_uuid,
        v_modified_by_client_uuid=client_uuid,
    )
    return (await conn.execute(_versioned_update(table, tuple(sorted(changes))), params)).one()


async def write_task_row(
    conn: AsyncConnection,
    task_id: int,
    changes: Mapping[str, Any],
    *,
    now: dt.datetime,
    user_uuid: str,
    client_uuid: str | None,
) -> TaskRow:
    """One task row written (see write_versioned); the task as written."""
    row = await write_versioned(
        conn, job_tasks, task_id, changes, now=now, user_uuid=user_uuid, client_uuid=client_uuid
    )
    return task_row(row)


@functools.lru_cache(maxsize=64)
def _count_shift(old_col: str, new_col: str) -> Update:
    return (
        update(jobs)
        .where(jobs.c.id == bindparam("job_id"))
        .values({old_col: jobs.c[old_col] - 1, new_col: jobs.c[new_col] + 1})
    )


async def shift_count(conn: AsyncConnection, job_id: int, old: TaskStatus, new: TaskStatus) -> None:
    """One task of the job moved from `old` to `new`: the job's status counts follow."""
    await conn.execute(_count_shift(COUNT_COLUMN[old], COUNT_COLUMN[new]), {"job_id": job_id})


_STATUS_COUNTS = (
    select(job_tasks.c.status, func.count())
    .where(job_tasks.c.job_id == bindparam("job_id"))
    .group_by(job_tasks.c.status)
)
# (Parameters in an UPDATE must not share a column's name.)
_SET_COUNTS = (
    update(jobs)
    .where(jobs.c.id == bindparam("c_job_id"))
    .values({col: bindparam(f"c_{col}") for col in COUNT_COLUMN.values()})
)


async def recount(conn: AsyncConnection, job_id: int) -> None:
    """The job's status counts counted again from its task rows (after a bulk move or a
    deletion)."""
    rows = await conn.execute(_STATUS_COUNTS, {"job_id": job_id})
    counts = {COUNT_COLUMN[TaskStatus(status)]: n for status, n in rows}
    params = {f"c_{col}": counts.get(col, 0) for col in COUNT_COLUMN.values()}
    await conn.execute(_SET_COUNTS, {"c_job_id": job_id, **params})


async def move_tasks(
    conn: AsyncConnection,
    job_id: int,
    sources: Collection[TaskStatus],
    changes: Mapping[str, Any],
    *,
    now: dt.datetime,
    user_uuid: str,
    client_uuid: str | None,
) -> list[TaskRow]:
    """Writes `changes` to every task of the job in one of `sources` (one UPDATE ...
    RETURNING, versions bumped; the caller holds the job's row and recounts): the tasks
    as written, in id order. (Built per call: the changes' values are written as they
    are, NULL included.)"""
    rows = await conn.execute(
        update(job_tasks)
        .where(job_tasks.c.job_id == job_id, job_tasks.c.status.in_([s.value for s in sources]))
        .values(
            **changes,
            version=job_tasks.c.version + 1,
            modified_at=now,
            modified_by_user_uuid=user_uuid,
            modified_by_client_uuid=client_uuid,
        )
        .returning(*job_tasks.c)
    )
    return [task_row(row) for row in sorted(rows, key=lambda r: r.id)]


_COUNT_COLUMNS = tuple(COUNT_COLUMN.values())


async def insert_tasks(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[TaskRow]:
    """New task rows (each with its uuid), in one INSERT whatever their number; the rows as
    written, in the given rows' order (jobtask.store.inserts: not read back)."""
    return await insert_rows(conn, job_tasks, rows, task_of_columns)


class TaskWrites:
    """The task writes of one transaction, held until `flush` (see the module's text)."""

    def __init__(self) -> None:
        # Each task's columns to write, by task id: a second write of a task in the same
        # flush is merged into its first (the later values win, as a second UPDATE would).
        self._updates: dict[int, dict[str, Any]] = {}
        self._shifts: dict[int, dict[str, int]] = {}
        # In flush_sql.EVENT_COLUMNS's order.
        self._events: list[tuple[Any, ...]] = []
        self._closed: list[dict[str, Any]] = []
        self._opened: list[dict[str, Any]] = []
        # Every count shift taken, flushed or not, by job id (counts_written), and the jobs
        # whose rows were also written directly, outside this TaskWrites (mark_direct).
        self._shifted: dict[int, dict[str, int]] = {}
        self.direct: set[int] = set()
        # Job rows to write (id, columns with version and modified_*), held (write_job).
        self._job_updates: list[tuple[int, dict[str, Any]]] = []
        # The output of every task written here, as written, by job id then task id
        # (known_output).
        self._outputs: dict[int, dict[int, str | None]] = {}
        # The rows held writes leave, by task id and job id (SQLite keeps them at the
        # commit: jobtask.store.row_cache).
        self._task_rows: dict[int, TaskRow] = {}
        self._job_rows: dict[int, JobRow] = {}

    def __bool__(self) -> bool:
        return bool(
            self._updates or self._events or self._closed or self._opened or self._job_updates
        )

    def write_task(
        self,
        job: JobRow,
        task: TaskRow,
        changes: Mapping[str, Any],
        *,
        now: dt.datetime,
        user_uuid: str,
        client_uuid: str | None,
        event: str | None = feed.TASK_CHANGED,
    ) -> TaskRow:
        """lifecycle.write_task, held: the task's row as it will be, its job's counts
        shifted if its status changes, and its event (None: none)."""
        # The changes, then the row's version and modified_* (one dict, not two merged).
        written = dict(changes)
        written["version"] = task.version + 1
        written["modified_at"] = now
        written["modified_by_user_uuid"] = user_uuid
        written["modified_by_client_uuid"] = client_uuid
        held = self._updates.get(task.id)
        if held is None:
            self._updates[task.id] = written
        else:
            held.update(written)
        new = self._task_rows[task.id] = task_after(task, written)
        outputs = self._outputs.get(job.id)
        if outputs is None:
            outputs = self._outputs[job.id] = {}
        outputs[new.id] = new.output
        if new.status != task.status:
            was, now_in = COUNT_COLUMN[task.status], COUNT_COLUMN[new.status]
            for held_shifts in (self._shifts, self._shifted):
                shift = held_shifts.get(job.id)
                if shift is None:  # (not setdefault: that makes a dict each time)
                    shift = held_shifts[job.id] = {}
                # (A plain dict: a Counter's construction and item updates cost more.)
                shift[was] = shift.get(was, 0) - 1
                shift[now_in] = shift.get(now_in, 0) + 1
        if event is not None:
            payload = {"progress": new.progress} if event == feed.TASK_PROGRESS else to_json(new)
            self.event(job.uuid, event, payload, task_uuid=new.uuid, now=now)
        return new

    def counts_written(self, job: JobRow) -> dict[str, int]:
        """The count columns of the job's row (as locked, before this TaskWrites took
        anything) that every count shift taken here changes, with their values once
        written: all that changes in its row (the caller holds its lock). Only for a job not
        in `direct`. Its row as written is rows.job_after(job, these), made by the caller
        together with whatever else it writes to the row (one copy of it)."""
        shift = self._shifted.get(job.id)
        if not shift:
            return {}
        return {col: getattr(job, col) + n for col, n in shift.items() if n}

    def write_job(self, job: JobRow, written: Mapping[str, Any]) -> dict[str, Any]:
        """A job row's write (its columns with version and modified_*), held: `job` is its
        row as it will be written, `written` included, its counts as counts_written has
        them. The job's count shifts not flushed yet go out as part of it, not as a shift of
        their own: one write of the row (a PostgreSQL flush cannot update a row twice). The
        columns written."""
        pending = self._shifts.pop(job.id, None)
        columns = dict(written)
        if pending:
            for col in pending:
                columns.setdefault(col, getattr(job, col))
        self._job_updates.append((job.id, columns))
        self._job_rows[job.id] = job
        return columns

    def held_outputs(self) -> dict[int, str | None]:
        """The outputs of the task writes held (not flushed yet), by task id."""
        return {
            task_id: written["output"]
            for task_id, written in self._updates.items()
            if "output" in written
        }

    def known_output(self, job: JobRow) -> str | None:
        """The job's output (its tasks' outputs in creation order, concatenated, as
        job_writes.outputs_of reads them) when every task of the job was written here, so
        none needs reading: a one-task job completing. `job`: its row as locked or as it will
        be once this TaskWrites is flushed (a count shift keeps the total: either counts all
        of its tasks). None: some
        task was not written here, or the job's rows were also written directly
        (mark_direct: a task's output may have changed outside)."""
        if job.id in self.direct:
            return None
        outputs = self._outputs.get(job.id)
        total = (
            job.n_queued
            + job.n_active
            + job.n_completed
            + job.n_soft_failed
            + job.n_failed
            + job.n_canceled
            + job.n_paused
        )
        if outputs is None or len(outputs) != total:
            return None
        return "".join(output for _, output in sorted(outputs.items()) if output)

    def mark_direct(self, job_id: int) -> None:
        """The job's row is being written outside this TaskWrites (a status move, a
        recount): counts_written no longer knows it."""
        self.direct.add(job_id)

    def event(
        self,
        job_uuid: str,
        type_: str,
        payload: dict[str, Any],
        *,
        task_uuid: str | None,
        now: dt.datetime,
    ) -> None:
        self._events.append((now, job_uuid, task_uuid, type_, payload))

    def close_attempt(
        self,
        task: TaskRow,
        *,
        ended: dt.datetime,
        outcome: str,
        exit_code: int | None,
        signal: int | None,
        lease_expires: dt.datetime | None,
    ) -> None:
        """attempts.close_attempt of the task's current attempt, held (nothing for a task
        without a lease)."""
        if task.lease_id:
            self._closed.append(
                attempt_store.close_params(
                    task.id,
                    task.attempt,
                    ended=ended,
                    outcome=outcome,
                    exit_code=exit_code,
                    signal=signal,
                    lease_expires=lease_expires,
                )
            )

    def open_attempt(self, row: Mapping[str, Any]) -> None:
        """A claim's new task_attempts row."""
        self._opened.append(dict(row))

    async def flush(self, conn: AsyncConnection) -> None:
        """Writes everything held, a statement per kind on SQLite, one statement on
        PostgreSQL (see the module's text and jobtask.store.flush_sql)."""
        if not self:
            return
        account = row_cache.tracked(conn)
        before = 0 if account is None else account.changes()
        flush, written, job_rows = self._taken()
        await flush_sql.send(conn, flush)
        if account is not None:
            # Every task row updated, as written; every job row moved here, as written,
            # unless it was also shifted here (a count moved after its write_job: the row
            # kept would miss it); a shifted job's row is dropped (unless settle_written
            # notes it as it now is).
            changed_jobs: dict[int, JobRow | None] = dict(job_rows)
            changed_jobs.update(dict.fromkeys(row[0] for row in flush.shifts))
            account.written(before, written, changed_jobs)
        self._kept(conn, written)

    async def flush_guarded(
        self,
        conn: AsyncConnection,
        jobs: Mapping[int, JobRow],
        tasks: Iterable[TaskRow],
        *,
        claim: bool = False,
    ) -> bool:
        """PostgreSQL: everything held, written in one statement only if each of `jobs` and
        `tasks` is, under its lock, as given (their status; their version and lease), and
        every job's counts, shifted by the writes, call for no move (flush_sql.Guard):
        whether it was. For writes that ran no statement of their own. A job moved
        (write_job: its counts written as values) must hold the counts it is given with.
        Nothing is held after it, written or not. `claim`: the jobs' versions must be as
        given too, and the tasks still runnable (a guarded claim's tasks)."""
        ordered = sorted(jobs)
        moved = sorted({job_id for job_id, _ in self._job_updates})
        guard = flush_sql.Guard(
            jobs=[
                (job_id, jobs[job_id].status, self._unfinished_shift(job_id)) for job_id in ordered
            ],
            tasks=[
                (t.id, t.version, t.lease_id, t.lease_expires_at) for t in sorted(tasks, key=_by_id)
            ],
            job_versions=[jobs[job_id].version for job_id in ordered] if claim else None,
            runnable=claim,
            counted=[
                (job_id, [getattr(jobs[job_id], c) for c in _COUNT_COLUMNS]) for job_id in moved
            ],
        )
        flush, written, _ = self._taken()
        if not await flush_sql.send_guarded(conn, flush, guard):
            return False
        self._kept(conn, written)
        return True

    def _unfinished_shift(self, job_id: int) -> int:
        """By how much the count shifts taken here change the job's unfinished tasks."""
        shift = self._shifted.get(job_id, {})
        return sum(shift.get(col, 0) for col in flush_sql.UNFINISHED_COLUMNS)

    def _taken(self) -> tuple[flush_sql.Flush, list[TaskRow], dict[int, JobRow]]:
        """Everything held, taken out: the Flush to send, the task rows it writes (as
        written) and the job rows it moves (write_job)."""
        updates, self._updates = self._updates, {}
        shifts, self._shifts = self._shifts, {}
        events, self._events = self._events, []
        closed, self._closed = self._closed, []
        opened, self._opened = self._opened, []
        job_updates, self._job_updates = self._job_updates, []
        task_rows, self._task_rows = self._task_rows, {}
        job_rows, self._job_rows = self._job_rows, {}
        moved = [
            (job_id, *(shift.get(col, 0) for col in _COUNT_COLUMNS))
            for job_id, shift in sorted(shifts.items())
            if any(shift.values())
        ]
        # Each attempt closes once: a second close of it would find it closed.
        closing: dict[tuple[int, int], dict[str, Any]] = {}
        for row in closed:
            closing.setdefault((row["task"], row["number"]), row)
        opening: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for row in opened:
            opening.setdefault(tuple(row), []).append(tuple(row.values()))
        flush = flush_sql.Flush(
            updates=flush_sql.by_columns(updates.items()),
            job_updates=flush_sql.by_columns(job_updates),
            count_columns=_COUNT_COLUMNS,
            shifts=moved,
            closed=list(closing.values()),
            opened=opening,
            events=events,
        )
        return flush, [task_rows[task_id] for task_id in updates], job_rows

    @staticmethod
    def _kept(conn: AsyncConnection, written: list[TaskRow]) -> None:
        """PostgreSQL: the rows written, kept once the transaction commits (kept_tasks)."""
        cache = kept_tasks.kept(conn)
        if cache is not None and written:
            after_commit(conn, lambda: cache.committed(written))


def _by_id(task: TaskRow) -> int:
    return task.id
