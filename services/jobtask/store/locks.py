"""Row locks, always in one order: a job's row first, then its task rows (on PostgreSQL
this also orders each job's events: whoever holds the job row appends its events before the
next holder). A transaction holding several jobs takes them in job id order."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from jobtask.domain.errors import NotFound
from jobtask.store import driver, kept_tasks, row_cache
from jobtask.store.arrays import among, one_of
from jobtask.store.rows import (
    JOB_FIELDS,
    JobRow,
    TaskRow,
    job_of_values,
    job_row,
    jobs_and_tasks,
    task_row,
)
from jobtask.store.schema import job_tasks, jobs
from sqlalchemy import Row, Select, bindparam, case, func, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "JOB_BY_ID",
    "lock_job",
    "lock_job_then_others",
    "lock_jobs_by_uuid",
    "lock_pairs",
    "lock_task",
    "lock_task_row",
    "try_lock_jobs",
]

# The statements every task write runs, built once: building and keying a statement costs
# SQLAlchemy more than SQLite takes to answer it (about 55 of 80 us for a lookup by id).
JOB_BY_ID = select(jobs).where(jobs.c.id == bindparam("job_id"))
_LOCK_JOB_BY_ID = JOB_BY_ID.with_for_update()
_LOCK_JOB_BY_UUID = select(jobs).where(jobs.c.uuid == bindparam("uuid")).with_for_update()
# A task's job's row and the task's row, locked in one statement: each pair is locked job
# first -- FOR UPDATE locks the tables of a row in FROM order, after the ORDER BY
# (PostgreSQL's LockRows sits above the sort) -- so the lock order holds inside it.
_PAIRS = select(jobs, job_tasks).join_from(jobs, job_tasks, job_tasks.c.job_id == jobs.c.id)
_LOCK_PAIR = _PAIRS.where(job_tasks.c.uuid == bindparam("uuid")).with_for_update()
# Several tasks with their jobs, in two steps, each reading only the named rows through
# a key: the jobs, found by their tasks' uuids and read through their primary key in its
# order (the store's sessions plan no sorts, and the ORDER BY had drawn a walk of every job:
# tests/core/test_read_plans.py; likewise by the jobs' own uuids below); then the tasks,
# by their own key in its order, their jobs all held (every writer locks a job before its
# tasks). One join of the two read each job's tasks by an index: by job id, statistics taken
# while a fan-out job had one task made PostgreSQL walk all of its tasks through (job_id,
# sequence, status) and filter the named ones out (2,000 task rows read by each group commit
# of reports at 2,000 tasks, the replayed fan-out's costliest statement); by any column no
# index holds, it compared every named task with every job.
_NAMED_TASKS = job_tasks.alias("named_tasks")
_NAMED_JOBS = jobs.alias("named_jobs")
_NAMED = one_of(_NAMED_TASKS.c.uuid, "uuids")
_LOCK_JOBS_OF_TASKS = (
    select(jobs)
    .where(among(jobs.c.id, select(_NAMED_TASKS.c.job_id).where(_NAMED)))
    .order_by(jobs.c.id)
    .with_for_update()
)
_LOCK_TASK = select(job_tasks).where(job_tasks.c.uuid == bindparam("uuid")).with_for_update()
# The two in one statement on PostgreSQL (one round trip a group commit fewer, and the jobs'
# rows held that much less): the jobs are locked in a CTE, in id order, and all of them
# before the first task is read -- the uncorrelated count of the CTE is an InitPlan, a
# one-time filter run before the tasks' scan yields a row, and a CTE referenced twice is
# run to its end once -- so the lock order is the two statements' (jobs in id order, then
# tasks in id order: LockRows above the tasks' key walk). The tasks' rows are locked with
# their newest versions (READ COMMITTED re-reads a row updated since the statement's
# snapshot when it locks it), as the second statement read them.
_HELD_JOBS = _LOCK_JOBS_OF_TASKS.cte("held_jobs")
_LOCK_JOBS_THEN_TASKS = (
    select(_HELD_JOBS, job_tasks)
    .join_from(job_tasks, _HELD_JOBS, _HELD_JOBS.c.id == job_tasks.c.job_id)
    .where(among(job_tasks.c.id, select(_NAMED_TASKS.c.id).where(_NAMED)))
    .where(select(func.count()).select_from(_HELD_JOBS).scalar_subquery() > 0)
    .order_by(job_tasks.c.id)
    .with_for_update(of=job_tasks)
)
# The same locks, reading of each task only what tells whether this process's kept row of it
# is its row (jobtask.store.kept_tasks): its uuid, version and lease columns; and each job's
# columns once, on its first task's row, NULL on the others (a group's tasks share their
# job, and its 38 columns -- its JSON decoded -- cost more than a task's five: the lock of
# 50 tasks of one job took ~30 % less of this process's CPU, bench/README.md, the
# twenty-first session). The tasks are locked in a CTE, as above (the jobs first, then the
# tasks in id order); a locking clause allows no window function beside it, so each job's
# first row is told outside it. Each row: the job's columns (or NULLs), then the task's
# job id, id and _CHECKED; in (job id, task id) order.
_CHECKED = (
    job_tasks.c.uuid,
    job_tasks.c.version,
    job_tasks.c.lease_id,
    job_tasks.c.lease_expires_at,
)
_CHECKED_TASKS = (
    select(job_tasks.c.job_id, job_tasks.c.id, *_CHECKED)
    .join_from(job_tasks, _HELD_JOBS, _HELD_JOBS.c.id == job_tasks.c.job_id)
    .where(among(job_tasks.c.id, select(_NAMED_TASKS.c.id).where(_NAMED)))
    .where(select(func.count()).select_from(_HELD_JOBS).scalar_subquery() > 0)
    .order_by(job_tasks.c.id)
    .with_for_update(of=job_tasks)
    .cte("checked_tasks")
)
_FIRST_OF_JOB = (
    func.row_number().over(partition_by=_CHECKED_TASKS.c.job_id, order_by=_CHECKED_TASKS.c.id) == 1
)
_LOCK_JOBS_THEN_CHECKED: Select[Any] = (
    select(
        *(
            case((_FIRST_OF_JOB, _HELD_JOBS.c[c.name]), else_=null()).label(f"held_{c.name}")
            for c in jobs.c
        ),
        *_CHECKED_TASKS.c,
    )
    .join_from(_CHECKED_TASKS, _HELD_JOBS, _HELD_JOBS.c.id == _CHECKED_TASKS.c.job_id)
    .order_by(_CHECKED_TASKS.c.job_id, _CHECKED_TASKS.c.id)
)
# SQLite's lock_pairs: one read of the named tasks with their jobs (no locks to order there).
# Each task found by its uuid's index and its job by primary key: no other row is read.
_SQLITE_PAIRS = _PAIRS.where(one_of(job_tasks.c.uuid, "uuids"))
# Where a task's id is in a row of _PAIRS (after its job's columns; a job's id comes first).
_PAIR_TASK_ID = len(jobs.c)


_LOCK_JOBS_BY_UUID = (
    select(jobs)
    .where(among(jobs.c.id, select(_NAMED_JOBS.c.id).where(one_of(_NAMED_JOBS.c.uuid, "uuids"))))
    .order_by(jobs.c.id)
    .with_for_update()
)
_TRY_LOCK_JOBS = (
    select(jobs)
    .where(one_of(jobs.c.id, "ids"))
    .order_by(jobs.c.id)
    .with_for_update(skip_locked=True)
)

# SQLite's lock_job_then_others: its writer holds every row already. The UNION ALL of two
# subqueries cost SQLite ~43,000 instructions a one-task job more than this plain read
# (each branch's rows copied through its subquery; bench/README.md, 2026-12-06).
_JOBS_BY_ID = select(jobs).where(one_of(jobs.c.id, "ids"))
# One job's row waited for, then others' locked unless held (lock_job_then_others): PostgreSQL
# runs a UNION ALL's branches in order, so the first is locked before the others are tried.
_LOCK_JOB_THEN_OTHERS = union_all(
    select(_LOCK_JOB_BY_ID.subquery("first_job")),
    select(_TRY_LOCK_JOBS.subquery("other_jobs")),
)


async def lock_job(
    conn: AsyncConnection, *, uuid: str | None = None, job_id: int | None = None
) -> JobRow:
    if uuid is not None:
        found = await driver.rows(conn, _LOCK_JOB_BY_UUID, {"uuid": uuid})
    else:
        if conn.dialect.name == "sqlite" and job_id is not None:
            # A claim's only job (as lock_job_then_others for several): kept, or read.
            kept = _kept_jobs(conn, (job_id,))
            if kept is not None:
                return kept[job_id]
        found = await driver.rows(conn, _LOCK_JOB_BY_ID, {"job_id": job_id})
    if not found:
        raise NotFound(f"job {uuid or job_id} not found")
    # (The job's columns in table order, a Row's or an asyncpg Record's.)
    return job_of_values(list(found[0]))


async def lock_task(conn: AsyncConnection, uuid: str) -> tuple[JobRow, TaskRow]:
    """Locks a task's job, then the task, in one statement; returns (job, task)."""
    found = jobs_and_tasks(await conn.execute(_LOCK_PAIR, {"uuid": uuid}))
    if not found:
        raise NotFound(f"task {uuid} not found")
    return found[0]


async def lock_pairs(conn: AsyncConnection, uuids: Collection[str]) -> list[tuple[JobRow, TaskRow]]:
    """Locks tasks and their jobs (the jobs in id order, then the tasks): (job, task) for
    each task found, in (job id, task id) order, one JobRow per job.

    SQLite: a join; its writer holds every row from the transaction's start (BEGIN
    IMMEDIATE), so there is no lock order to keep; the second read cost ~25,000
    instructions a one-task job (bench/README.md, 2026-12-06, claim lane). PostgreSQL: the
    jobs locked first, then the tasks, in one statement (_LOCK_JOBS_THEN_TASKS)."""
    if conn.dialect.name == "sqlite":
        # The rows this process's claim (or last report group) wrote, if kept and valid.
        account = row_cache.tracked(conn)
        kept = None if account is None else account.pairs(uuids)
        if kept is not None:
            return kept
        rows = await conn.execute(_SQLITE_PAIRS, {"uuids": list(uuids)})
        # Sorted here (no ORDER BY: a sort step in SQLite's plan for at most a group's rows
        # costs more than this); jobs_and_tasks makes one JobRow of a job's adjacent rows.
        return jobs_and_tasks(sorted(rows, key=_pair_order))
    cache = kept_tasks.kept(conn)
    if cache is not None and cache.have(uuids):
        checked = await _checked_pairs(conn, cache, uuids)
        if checked is not None:
            return checked
    rows = await conn.execute(_LOCK_JOBS_THEN_TASKS, {"uuids": list(uuids)})
    # In task id order: sorted by job id (stable: each job's tasks stay in id order), so
    # that jobs_and_tasks makes one JobRow of each job's adjacent rows.
    return jobs_and_tasks(sorted(rows, key=_pair_order))


async def _checked_pairs(
    conn: AsyncConnection, cache: kept_tasks.KeptTasks, uuids: Collection[str]
) -> list[tuple[JobRow, TaskRow]] | None:
    """lock_pairs on PostgreSQL with every task kept: the same locks, each task's row taken
    from the cache if its version and lease columns are the kept row's (kept_tasks, rule 2);
    None if one is not (the caller reads them all whole: the locks are held already)."""
    rows = await driver.rows(conn, _LOCK_JOBS_THEN_CHECKED, {"uuids": list(uuids)})
    split = len(JOB_FIELDS)
    out: list[tuple[JobRow, TaskRow]] = []
    job: JobRow | None = None
    for row in rows:
        values = list(row)
        task = cache.checked(*values[split + 2 :])
        if task is None:
            cache.misses += 1
            return None
        if values[0] is not None:  # (its job's first row)
            job = job_of_values(values[:split])
        elif job is None:  # (not so: each job's first row comes first)
            return None
        out.append((job, task))
    cache.hits += 1
    return out


def _pair_order(row: Row[Any]) -> tuple[int, int]:
    return row[0], row[_PAIR_TASK_ID]


async def lock_task_row(conn: AsyncConnection, uuid: str) -> TaskRow | None:
    """Locks one task whose job's row the caller has locked (None: no such task)."""
    row = (await conn.execute(_LOCK_TASK, {"uuid": uuid})).first()
    return None if row is None else task_row(row)


async def lock_jobs_by_uuid(conn: AsyncConnection, uuids: Collection[str]) -> dict[str, JobRow]:
    """Locks several jobs' rows, named by uuid, in one statement, in id order; by uuid (those
    not found are left out)."""
    rows = await conn.execute(_LOCK_JOBS_BY_UUID, {"uuids": sorted(uuids)})
    return {row.uuid: job_row(row) for row in rows}


async def try_lock_jobs(conn: AsyncConnection, job_ids: Collection[int]) -> dict[int, JobRow]:
    """Locks several jobs' rows in one statement unless another transaction holds them:
    those are left out (PostgreSQL; SQLite's writer holds every row). For a transaction
    that already holds another job's row: waiting for more, in no fixed order, could
    deadlock with a transaction doing the same the other way round."""
    if conn.dialect.name == "sqlite":
        kept = _kept_jobs(conn, job_ids)
        if kept is not None:
            return kept
    rows = await conn.execute(_TRY_LOCK_JOBS, {"ids": sorted(job_ids)})
    return _jobs_by_id(rows)


async def lock_job_then_others(
    conn: AsyncConnection, job_id: int, others: Collection[int]
) -> dict[int, JobRow]:
    """lock_job(job_id=job_id), then try_lock_jobs(others), in one statement (one round
    trip): the first job is waited for, the others (not including it) are left out if
    another transaction holds them. NotFound if the first job is not found."""
    if conn.dialect.name == "sqlite":
        # No row another transaction could hold: the rows kept (a submission's, a claim's),
        # else one plain read of them all.
        kept = _kept_jobs(conn, [job_id, *others])
        if kept is not None:
            return kept
        rows = await conn.execute(_JOBS_BY_ID, {"ids": [job_id, *others]})
    else:
        rows = await conn.execute(_LOCK_JOB_THEN_OTHERS, {"job_id": job_id, "ids": sorted(others)})
    got = _jobs_by_id(rows)
    if job_id not in got:
        raise NotFound(f"job {job_id} not found")
    return got


def _kept_jobs(conn: AsyncConnection, job_ids: Collection[int]) -> dict[int, JobRow] | None:
    """SQLite: the jobs' rows as kept (jobtask.store.row_cache), if all are."""
    account = row_cache.tracked(conn)
    return None if account is None else account.kept_jobs(job_ids)


def _jobs_by_id(rows: Iterable[Row[Any]]) -> dict[int, JobRow]:
    """Jobs' rows by id, the id read from each JobRow (a dict lookup) rather than the Row
    (by name: ~2,000 instructions, SQLAlchemy's hasattr on the Row class missing)."""
    return {job.id: job for job in map(job_row, rows)}
