"""Set-based job writes: the status moves of many jobs settled at once (a group of
one-task jobs completing, a claim starting tasks of many jobs) with a constant number of
statements -- one read of the jobs, one of the completing jobs' outputs, one executemany
UPDATE per set of columns written and one INSERT of their events -- instead of four or five
statements a job. The caller holds every job's row lock, so a job's record as read plus the
changes (and its version plus one) is the row as written (`rows.job_after`)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection, Mapping
from typing import Any

from jobtask.store.locks import JOB_BY_ID
from jobtask.store.rows import JobRow, job_row
from jobtask.store.schema import job_tasks, jobs
from jobtask.store.task_writes import write_versioned
from sqlalchemy import Update, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["job_by_id", "jobs_by_id", "outputs_of", "write_job_row", "write_jobs"]

_JOBS = select(jobs).where(jobs.c.id.in_(bindparam("ids", expanding=True)))
_OUTPUTS = (
    select(job_tasks.c.job_id, job_tasks.c.output)
    .where(job_tasks.c.job_id.in_(bindparam("ids", expanding=True)))
    .order_by(job_tasks.c.job_id, job_tasks.c.id)
)


@functools.lru_cache(maxsize=64)
def _job_update(columns: tuple[str, ...]) -> Update:
    return (
        update(jobs)
        .where(jobs.c.id == bindparam("w_id"))
        .values({name: bindparam(f"w_{name}") for name in columns})
    )


async def job_by_id(conn: AsyncConnection, job_id: int) -> JobRow:
    """The job's row as it now is (in this transaction)."""
    return job_row((await conn.execute(JOB_BY_ID, {"job_id": job_id})).one())


async def jobs_by_id(conn: AsyncConnection, job_ids: Collection[int]) -> dict[int, JobRow]:
    """The jobs' rows as they now are (in this transaction); by id."""
    rows = await conn.execute(_JOBS, {"ids": sorted(job_ids)})
    return {row.id: job_row(row) for row in rows}


async def outputs_of(conn: AsyncConnection, job_ids: Collection[int]) -> dict[int, str]:
    """Each job's tasks' outputs in creation order, concatenated (crunch-job concatenated
    manifest fragments): a completing job's output. One statement for any number of
    jobs."""
    out: dict[int, str] = dict.fromkeys(job_ids, "")
    if out:
        for job_id, output in await conn.execute(_OUTPUTS, {"ids": sorted(out)}):
            if output:
                out[job_id] += output
    return out


async def write_jobs(conn: AsyncConnection, written: list[tuple[int, dict[str, Any]]]) -> None:
    """Writes (job id, columns) pairs -- columns including version and modified_*, as the
    caller computed them -- with one executemany per set of columns."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for job_id, columns in written:
        params = {f"w_{name}": value for name, value in columns.items()}
        params["w_id"] = job_id
        by_columns.setdefault(tuple(sorted(columns)), []).append(params)
    for names, rows in by_columns.items():
        await conn.execute(_job_update(names), rows)


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
