"""The job_tasks table outside the hot path: reads, lists and deletion. (Writes are
jobtask.store.task_writes's, locks jobtask.store.locks's; claims and leases have their own
modules.)"""

from __future__ import annotations

from collections.abc import Collection

from jobtask.domain.access import Reader
from jobtask.domain.query import ListQuery
from jobtask.store.access import readable_by
from jobtask.store.arrays import one_of
from jobtask.store.listing import run_list
from jobtask.store.rows import TaskRow, task_row
from jobtask.store.schema import job_tasks
from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "children_of",
    "delete_task",
    "delete_tasks",
    "jobs_and_statuses_of",
    "list_tasks",
    "task_by_uuid",
    "tasks_of_job",
]

# Built once: the hottest task read (GetTask).
_TASK_BY_UUID = select(job_tasks).where(job_tasks.c.uuid == bindparam("uuid"))
_JOBS_AND_STATUSES = select(job_tasks.c.uuid, job_tasks.c.job_uuid, job_tasks.c.status).where(
    one_of(job_tasks.c.uuid, "uuids")
)
_DELETE_TASK = delete(job_tasks).where(job_tasks.c.id == bindparam("task_id"))
_DELETE_TASKS = delete(job_tasks).where(one_of(job_tasks.c.id, "ids"))
_CHILDREN = select(job_tasks.c.id, job_tasks.c.uuid).where(
    job_tasks.c.job_id == bindparam("job_id"),
    one_of(job_tasks.c.created_by_job_task_uuid, "uuids"),
)
# No ORDER BY: under the store's session settings (no sorts) the planner would walk the
# whole primary key for the id order, every task of every job; the job's index and a sort
# here read only the job's tasks (tests/core/test_read_plans.py).
_TASKS_OF_JOB = select(job_tasks).where(job_tasks.c.job_id == bindparam("job_id"))
_TASK_OF_JOB = _TASKS_OF_JOB.where(job_tasks.c.uuid == bindparam("uuid"))


async def task_by_uuid(conn: AsyncConnection, uuid: str) -> TaskRow | None:
    row = (await conn.execute(_TASK_BY_UUID, {"uuid": uuid})).first()
    return None if row is None else task_row(row)


async def jobs_and_statuses_of(
    conn: AsyncConnection, uuids: Collection[str]
) -> dict[str, tuple[str, str]]:
    """The job and the status of each of these tasks that exists, by task uuid: one read."""
    rows = await conn.execute(_JOBS_AND_STATUSES, {"uuids": sorted(uuids)})
    return {str(task): (str(job), str(status)) for task, job, status in rows.all()}


async def list_tasks(
    conn: AsyncConnection, reader: Reader, query: ListQuery, *, cluster_id: str
) -> tuple[list[TaskRow], int | None]:
    """A page of the tasks the reader may read, and the total when the query asks for it."""
    extra = readable_by(reader, job_tasks.c.owner_uuid)
    rows, total = await run_list(conn, job_tasks, query, cluster_id=cluster_id, extra=extra)
    return [task_row(r) for r in rows], total


async def delete_task(conn: AsyncConnection, task_id: int) -> None:
    """The task's row only (its descendants: jobtask.manager.lifecycle.delete_descendants)."""
    await conn.execute(_DELETE_TASK, {"task_id": task_id})


async def delete_tasks(conn: AsyncConnection, ids: Collection[int]) -> None:
    """These task rows, in one statement (the caller recounts their job)."""
    await conn.execute(_DELETE_TASKS, {"ids": list(ids)})


async def children_of(
    conn: AsyncConnection, job_id: int, uuids: Collection[str]
) -> list[tuple[int, str]]:
    """(id, uuid) of the job's tasks created by any of these tasks."""
    rows = await conn.execute(_CHILDREN, {"job_id": job_id, "uuids": list(uuids)})
    return [(int(row.id), str(row.uuid)) for row in rows]


async def tasks_of_job(
    conn: AsyncConnection, job_id: int, *, task_uuid: str | None = None
) -> list[TaskRow]:
    """The job's tasks in creation order (only the one named by task_uuid, when given)."""
    if task_uuid:
        rows = await conn.execute(_TASK_OF_JOB, {"job_id": job_id, "uuid": task_uuid})
    else:
        rows = await conn.execute(_TASKS_OF_JOB, {"job_id": job_id})
    return [task_row(row) for row in sorted(rows, key=lambda row: int(row.id))]
