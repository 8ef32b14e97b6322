"""Job reads and writes for the status moves of many jobs settled at once (a group of
one-task jobs completing, a claim starting tasks of many jobs): one read of the jobs, one
of the completing jobs' outputs (the moves themselves go out with the tasks' writes, in
TaskWrites.write_job and its flush), and a single job row's write (write_job_row). The
caller holds every job's row lock, so a job's record as read plus the changes (and its
version plus one) is the row as written (`rows.job_after`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any

from jobtask.store import driver
from jobtask.store.arrays import one_of
from jobtask.store.locks import JOB_BY_ID
from jobtask.store.rows import JobRow, job_of_values, job_row
from jobtask.store.schema import job_tasks, jobs
from jobtask.store.task_writes import write_versioned
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["job_by_id", "jobs_by_id", "outputs_of", "write_job_row"]

_JOBS = select(jobs).where(one_of(jobs.c.id, "ids"))
_OUTPUTS = (
    select(job_tasks.c.job_id, job_tasks.c.output, job_tasks.c.id)
    .where(one_of(job_tasks.c.job_id, "ids"))
    .order_by(job_tasks.c.job_id, job_tasks.c.id)
)


async def job_by_id(conn: AsyncConnection, job_id: int) -> JobRow:
    """The job's row as it now is (in this transaction)."""
    return job_row((await conn.execute(JOB_BY_ID, {"job_id": job_id})).one())


async def jobs_by_id(conn: AsyncConnection, job_ids: Collection[int]) -> dict[int, JobRow]:
    """The jobs' rows as they now are (in this transaction; not locked), by id, through
    asyncpg directly on PostgreSQL (jobtask.store.driver)."""
    rows = await driver.rows(conn, _JOBS, {"ids": sorted(job_ids)})
    return {job.id: job for job in (job_of_values(list(row)) for row in rows)}


async def outputs_of(
    conn: AsyncConnection, job_ids: Collection[int], held: Mapping[int, str | None] | None = None
) -> dict[int, str]:
    """Each job's tasks' outputs in creation order, concatenated (crunch-job concatenated
    manifest fragments): a completing job's output. One statement for any number of
    jobs. `held`: outputs written but not flushed yet (TaskWrites.held_outputs), by task
    id, instead of those read."""
    out: dict[int, str] = dict.fromkeys(job_ids, "")
    if out:
        for job_id, output, task_id in await conn.execute(_OUTPUTS, {"ids": sorted(out)}):
            if held and task_id in held:
                output = held[task_id]
            if output:
                out[job_id] += output
    return out


async def write_job_row(
    conn: AsyncConnection,
    job_id: int,
    changes: Mapping[str, Any],
    *,
    now: dt.datetime,
    user_uuid: str,
    client_uuid: str | None,
) -> JobRow:
    """One job row (locked by the caller) written, its version bumped, in one UPDATE ...
    RETURNING (task_writes.write_versioned): the job as written."""
    row = await write_versioned(
        conn, jobs, job_id, changes, now=now, user_uuid=user_uuid, client_uuid=client_uuid
    )
    return job_row(row)
