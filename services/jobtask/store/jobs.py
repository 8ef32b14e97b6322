"""The jobs table outside the hot path: submission, reads, lists, the queue's size and
deletion. (Status moves and locking are jobtask.manager.lifecycle's.)"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from jobtask.domain.access import Reader, only_owner
from jobtask.domain.query import ListQuery
from jobtask.domain.statuses import JobStatus, TaskStatus
from jobtask.store.access import readable_by
from jobtask.store.listing import run_list
from jobtask.store.rows import COUNT_COLUMN, JobRow, job_row
from jobtask.store.schema import job_tasks, jobs
from sqlalchemy import Update, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "count_new_tasks",
    "count_queued",
    "delete_job",
    "insert_job",
    "job_by_submit_id",
    "job_by_uuid",
    "list_jobs",
    "newest_duplicate",
]

J = JobStatus
# Arvados: a job that "has not failed" may be returned instead of a duplicate.
_NOT_REUSABLE = [J.FAILED.value, J.CANCELED.value]

# Built once: the hottest read (GetJob).
_JOB_BY_UUID = select(jobs).where(jobs.c.uuid == bindparam("uuid"))
_JOB_BY_SUBMIT_ID = select(jobs).where(jobs.c.submit_id == bindparam("submit_id"))
_INSERT_JOB = insert(jobs).returning(*jobs.c)
# The newest reusable job with the same identity (admins see every user's).
_DUPLICATE = (
    select(jobs)
    .where(jobs.c.identity == bindparam("identity"), jobs.c.status.not_in(_NOT_REUSABLE))
    .order_by(jobs.c.id.desc())
    .limit(1)
)
_OWN_DUPLICATE = _DUPLICATE.where(jobs.c.owner_uuid == bindparam("owner"))
_COUNT_QUEUED = select(func.count()).select_from(jobs).where(jobs.c.status == J.QUEUED.value)
_DELETE_TASKS = delete(job_tasks).where(job_tasks.c.job_id == bindparam("job_id"))
_DELETE_JOB = delete(jobs).where(jobs.c.id == bindparam("job_id"))


async def job_by_uuid(conn: AsyncConnection, uuid: str) -> JobRow | None:
    row = (await conn.execute(_JOB_BY_UUID, {"uuid": uuid})).first()
    return None if row is None else job_row(row)


async def job_by_submit_id(conn: AsyncConnection, submit_id: str) -> JobRow | None:
    row = (await conn.execute(_JOB_BY_SUBMIT_ID, {"submit_id": submit_id})).first()
    return None if row is None else job_row(row)


async def newest_duplicate(conn: AsyncConnection, reader: Reader, identity: str) -> JobRow | None:
    """The newest job the reader may read with this identity that has not failed."""
    owner = only_owner(reader)
    if owner is None:
        found = await conn.execute(_DUPLICATE, {"identity": identity})
    else:
        found = await conn.execute(_OWN_DUPLICATE, {"identity": identity, "owner": owner})
    row = found.first()
    return None if row is None else job_row(row)


async def insert_job(conn: AsyncConnection, values: dict[str, Any]) -> JobRow:
    return job_row((await conn.execute(_INSERT_JOB, values)).one())


async def list_jobs(
    conn: AsyncConnection,
    reader: Reader,
    query: ListQuery,
    *,
    cluster_id: str,
    queued_only: bool = False,
) -> tuple[list[JobRow], int | None]:
    """A page of the jobs the reader may read (queued ones only if asked), and the total
    when the query asks for it."""
    extra = readable_by(reader, jobs.c.owner_uuid)
    if queued_only:
        extra = extra & (jobs.c.status == J.QUEUED.value)
    rows, total = await run_list(conn, jobs, query, cluster_id=cluster_id, extra=extra)
    return [job_row(r) for r in rows], total


async def count_queued(conn: AsyncConnection) -> int:
    """Every queued job, readable or not."""
    return int((await conn.execute(_COUNT_QUEUED)).scalar() or 0)


async def delete_job(conn: AsyncConnection, job_id: int) -> None:
    """The job and all its tasks."""
    await conn.execute(_DELETE_TASKS, {"job_id": job_id})
    await conn.execute(_DELETE_JOB, {"job_id": job_id})


@functools.lru_cache(maxsize=16)
def _count_up(columns: tuple[str, ...]) -> Update:
    return (
        update(jobs)
        .where(jobs.c.id == bindparam("job_id"))
        .values({col: jobs.c[col] + bindparam(f"d_{col}") for col in columns})
        .returning(*jobs.c)
    )


async def count_new_tasks(conn: AsyncConnection, job_id: int, added: Counter[TaskStatus]) -> JobRow:
    """New tasks counted in the job's row (`added`: how many in each status); the job's row
    as it then is."""
    columns = tuple(sorted(COUNT_COLUMN[status] for status in added))
    params: dict[str, Any] = {"job_id": job_id}
    for status, n in added.items():
        params[f"d_{COUNT_COLUMN[status]}"] = n
    return job_row((await conn.execute(_count_up(columns), params)).one())
