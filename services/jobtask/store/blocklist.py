"""What the job blocklist counts: tasks of a job a worker failed, and the job's list as it
stands in this transaction."""

from __future__ import annotations

from typing import Any

from jobtask.store.schema import job_tasks, jobs, task_failures
from sqlalchemy import bindparam, func, select

_FAILED_TASKS = (
    select(func.count())
    .select_from(task_failures.join(job_tasks, job_tasks.c.id == task_failures.c.task_id))
    .where(job_tasks.c.job_id == bindparam("job_id"), task_failures.c.worker_id == bindparam("w"))
)
_BLOCKLIST = select(jobs.c.blocklist, jobs.c.failure_reason).where(jobs.c.id == bindparam("job_id"))


async def failed_tasks(conn: Any, job_id: int, worker_id: str) -> int:
    """Distinct tasks of the job the worker has failed (task_failures keeps one row per
    task and worker)."""
    return int((await conn.execute(_FAILED_TASKS, {"job_id": job_id, "w": worker_id})).scalar())


async def current(conn: Any, job_id: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The job's blocklist and failure reason as this transaction sees them (a caller's job
    record may predate its own writes)."""
    row = (await conn.execute(_BLOCKLIST, {"job_id": job_id})).one()
    return list(row.blocklist or []), row.failure_reason
