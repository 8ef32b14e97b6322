"""The claim query: runnable tasks, best first, locked without waiting on other claimers."""

from __future__ import annotations

from typing import Any

from jobtask.domain.statuses import JOB_DISPATCHABLE, TASK_CLAIMABLE, TaskStatus
from jobtask.store.schema import job_tasks, jobs, task_failures
from sqlalchemy import Select, and_, exists, select
from sqlalchemy.orm import aliased

_lower = aliased(job_tasks, name="lower")
_parent = aliased(job_tasks, name="parent")


def runnable_tasks(worker_id: str | None, limit: int) -> Select[Any]:
    """Tasks a worker may start now, by job priority then order of arrival.

    A task is runnable when it is queued (or soft-failed), its job is queued or active,
    every task of its job with a lower sequence has completed (seeds: "A step cannot be run
    until all steps with lower sequence numbers have completed"), and the task that created
    it (if any) has completed. A worker that failed the task is passed over.
    """
    t = job_tasks
    stmt = (
        select(t, jobs.c.priority.label("job_priority"))
        .join(jobs, jobs.c.id == t.c.job_id)
        .where(
            t.c.status.in_([s.value for s in TASK_CLAIMABLE]),
            jobs.c.status.in_([s.value for s in JOB_DISPATCHABLE]),
            ~exists().where(
                _lower.c.job_id == t.c.job_id,
                _lower.c.sequence < t.c.sequence,
                _lower.c.status != TaskStatus.COMPLETED.value,
            ),
            (t.c.created_by_job_task_uuid.is_(None))
            | exists().where(
                _parent.c.uuid == t.c.created_by_job_task_uuid,
                _parent.c.status == TaskStatus.COMPLETED.value,
            ),
        )
        .order_by(jobs.c.priority.desc(), t.c.id)
        .limit(limit)
    )
    if worker_id:
        stmt = stmt.where(
            ~exists().where(
                and_(task_failures.c.task_id == t.c.id, task_failures.c.worker_id == worker_id)
            )
        )
    # PostgreSQL: claimers skip each other's locked rows instead of queueing behind them.
    return stmt.with_for_update(of=t, skip_locked=True)
