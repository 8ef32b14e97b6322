"""The job_tasks table outside the hot path: reads, lists and deletion. (Creation, status
moves and locking are jobtask.manager.lifecycle's; claims and leases have their own
modules.)"""

from __future__ import annotations

from collections.abc import Collection

from jobtask.domain.access import Reader
from jobtask.domain.query import ListQuery
from jobtask.store.access import readable_by
from jobtask.store.listing import run_list
from jobtask.store.records import Record, task_record
from jobtask.store.schema import job_tasks
from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["delete_task", "job_uuids_of", "list_tasks", "task_by_uuid"]

# Built once: the hottest task read (GetTask).
_TASK_BY_UUID = select(job_tasks).where(job_tasks.c.uuid == bindparam("uuid"))
_JOB_UUIDS = select(job_tasks.c.uuid, job_tasks.c.job_uuid).where(
    job_tasks.c.uuid.in_(bindparam("uuids", expanding=True))
)
_DELETE_TASK = delete(job_tasks).where(job_tasks.c.id == bindparam("task_id"))


async def task_by_uuid(conn: AsyncConnection, uuid: str) -> Record | None:
    row = (await conn.execute(_TASK_BY_UUID, {"uuid": uuid})).first()
    return None if row is None else task_record(row)


async def job_uuids_of(conn: AsyncConnection, uuids: Collection[str]) -> dict[str, str]:
    """The job of each of these tasks that exists, by task uuid: one read."""
    rows = await conn.execute(_JOB_UUIDS, {"uuids": sorted(uuids)})
    return {str(task): str(job) for task, job in rows.all()}


async def list_tasks(
    conn: AsyncConnection, reader: Reader, query: ListQuery, *, cluster_id: str
) -> tuple[list[Record], int | None]:
    """A page of the tasks the reader may read, and the total when the query asks for it."""
    extra = readable_by(reader, job_tasks.c.owner_uuid)
    rows, total = await run_list(conn, job_tasks, query, cluster_id=cluster_id, extra=extra)
    return [task_record(r) for r in rows], total


async def delete_task(conn: AsyncConnection, task_id: int) -> None:
    """The task's row only (its descendants: jobtask.manager.lifecycle.delete_descendants)."""
    await conn.execute(_DELETE_TASK, {"task_id": task_id})
