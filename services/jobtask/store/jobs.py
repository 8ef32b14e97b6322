"""The jobs table outside the hot path: submission, reads, lists, the queue's size and
deletion. (Status moves and locking are jobtask.manager.lifecycle's.)"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Collection
from typing import Any

from jobtask.domain.access import Reader, only_owner
from jobtask.domain.query import ListQuery
from jobtask.domain.statuses import JobStatus, TaskStatus
from jobtask.store.access import readable_by
from jobtask.store.inserts import insert_rows
from jobtask.store.listing import run_list
from jobtask.store.rows import COUNT_COLUMN, JobRow, job_of_columns, job_row
from jobtask.store.schema import job_tasks, jobs
from sqlalchemy import Update, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "count_new_tasks",
    "count_queued",
    "delete_job",
    "insert_jobs",
    "job_by_uuid",
    "jobs_by_submit_ids",
    "list_jobs",
    "newest_duplicates",
]

J = JobStatus
# Arvados: a job that "has not failed" may be returned instead of a duplicate.
_NOT_REUSABLE = [J.FAILED.value, J.CANCELED.value]

# Built once: the hottest read (GetJob).
_JOB_BY_UUID = select(jobs).where(jobs.c.uuid == bindparam("uuid"))
_BY_SUBMIT_IDS = select(jobs).where(jobs.c.submit_id.in_(bindparam("submit_ids", expanding=True)))
# The newest reusable job of each identity (admins see every user's).
_REUSABLE = jobs.c.identity.in_(bindparam("identities", expanding=True)) & jobs.c.status.not_in(
    _NOT_REUSABLE
)
_NEWEST = select(func.max(jobs.c.id)).group_by(jobs.c.identity)
_DUPLICATES = select(jobs).where(jobs.c.id.in_(_NEWEST.where(_REUSABLE).scalar_subquery()))
_OWN_DUPLICATES = select(jobs).where(
    jobs.c.id.in_(
        _NEWEST.where(_REUSABLE, jobs.c.owner_uuid == bindparam("owner")).scalar_subquery()
    )
)
_COUNT_QUEUED = select(func.count()).select_from(jobs).where(jobs.c.status == J.QUEUED.value)
_DELETE_TASKS = delete(job_tasks).where(job_tasks.c.job_id == bindparam("job_id"))
_DELETE_JOB = delete(jobs).where(jobs.c.id == bindparam("job_id"))


async def job_by_uuid(conn: AsyncConnection, uuid: str) -> JobRow | None:
    row = (await conn.execute(_JOB_BY_UUID, {"uuid": uuid})).first()
    return None if row is None else job_row(row)


async def jobs_by_submit_ids(
    conn: AsyncConnection, submit_ids: Collection[str]
) -> dict[str, JobRow]:
    """The jobs submitted with these submit_ids, by submit_id (one statement)."""
    if not submit_ids:
        return {}
    rows = await conn.execute(_BY_SUBMIT_IDS, {"submit_ids": sorted(submit_ids)})
    return {row.submit_id: job_row(row) for row in rows}


async def newest_duplicates(
    conn: AsyncConnection, reader: Reader, identities: Collection[str]
) -> dict[str, JobRow]:
    """By identity, the newest job the reader may read with it that has not failed (Arvados
    may answer a submission with it); one statement for any number of identities."""
    if not identities:
        return {}
    params: dict[str, Any] = {"identities": sorted(identities)}
    owner = only_owner(reader)
    if owner is None:
        rows = await conn.execute(_DUPLICATES, params)
    else:
        rows = await conn.execute(_OWN_DUPLICATES, {**params, "owner": owner})
    return {row.identity: job_row(row) for row in rows}


async def insert_jobs(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[JobRow]:
    """New job rows (each with its uuid) in one INSERT whatever their number; the rows as
    written, in the given rows' order (jobtask.store.inserts: not read back)."""
    return await insert_rows(conn, jobs, rows, job_of_columns)


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
