"""Lifecycle events of jobs and tasks: a log line and a metric each, after commit.

The managers call these inside their write transactions; nothing is logged or counted
unless (and until) the transaction commits. No SQL: the rows the manager already holds."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from jobtask.domain.statuses import JobStatus, TaskStatus
from jobtask.observability import metrics
from jobtask.observability.logs import EVENTS, emit
from jobtask.store.database import after_commit
from jobtask.store.rows import JobRow, TaskRow
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["attempt_ended", "job_moved", "jobs_submitted", "lease_expired", "task_claimed"]

_JOB_FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})


def _seconds(since: dt.datetime | None, now: dt.datetime) -> float | None:
    if since is None:
        return None
    return max(float((now - since).total_seconds()), 0.0)


def jobs_submitted(conn: AsyncConnection, jobs: Sequence[JobRow]) -> None:
    """A submission's new jobs: one callback and one count for them all."""
    if not jobs:
        return

    def done() -> None:
        metrics.JOBS_SUBMITTED.inc(len(jobs))
        if not EVENTS.isEnabledFor(logging.INFO):
            return
        for job in jobs:
            emit(
                "job_submitted",
                job_uuid=job.uuid,
                owner_uuid=job.owner_uuid,
                script=job.script,
                priority=job.priority,
            )

    after_commit(conn, done)


def job_moved(conn: AsyncConnection, job: JobRow, previous: JobStatus) -> None:
    status = job.status
    if status == previous:
        return

    def done() -> None:
        if status in _JOB_FINAL:
            metrics.JOBS_FINISHED.labels(status.value).inc()
            emit("job_finished", job_uuid=job.uuid, status=status.value, previous=previous.value)
        else:
            emit("job_status", job_uuid=job.uuid, status=status.value, previous=previous.value)

    after_commit(conn, done)


def task_claimed(conn: AsyncConnection, queued: TaskRow, task: TaskRow, now: dt.datetime) -> None:
    """`queued`: the task's row before the claim (its last change made it runnable)."""
    waited = _seconds(queued.modified_at, now)

    def done() -> None:
        metrics.TASKS_CLAIMED.inc()
        if waited is not None:
            metrics.DISPATCH_SECONDS.observe(waited)
        if not EVENTS.isEnabledFor(logging.INFO):  # (once a task: its fields not built)
            return
        emit(
            "task_claimed",
            job_uuid=task.job_uuid,
            task_uuid=task.uuid,
            worker=task.worker_id,
            node=task.node_name,
            attempt=task.attempt,
            waited_s=None if waited is None else round(waited, 3),
        )

    after_commit(conn, done)


def lease_expired(conn: AsyncConnection, task: TaskRow) -> None:
    def done() -> None:
        metrics.LEASES_EXPIRED.inc()
        emit(
            "lease_expired",
            job_uuid=task.job_uuid,
            task_uuid=task.uuid,
            worker=task.worker_id,
            attempt=task.attempt,
        )

    after_commit(conn, done)


# The finished-attempt counter of each task status (labels() looks the child up under a
# lock, per call: once per attempt ended, on the report path).
_FINISHED = {status: metrics.TASKS_FINISHED.labels(status.value) for status in TaskStatus}


def attempt_ended(
    conn: AsyncConnection,
    before: TaskRow,
    after: TaskRow,
    now: dt.datetime,
    *,
    exit_code: int | None,
    signal: int | None,
) -> None:
    """An attempt decided by the completion rule: completed, retried or failed for good."""
    status = after.status
    ran = _seconds(before.started_at, now)

    def done() -> None:
        _FINISHED[status].inc()
        if ran is not None:
            metrics.TASK_RUN_SECONDS.observe(ran)
        if EVENTS.isEnabledFor(logging.INFO):  # (its fields are not built for nothing)
            emit(
                "task_finished",
                job_uuid=before.job_uuid,
                task_uuid=before.uuid,
                worker=before.worker_id,
                attempt=before.attempt,
                outcome=status.value,
                exit_code=exit_code,
                signal=signal,
                ran_s=None if ran is None else round(ran, 3),
            )
        if status is TaskStatus.SOFT_FAILED:
            metrics.TASK_RETRIES.inc()
            emit(
                "task_retried",
                job_uuid=before.job_uuid,
                task_uuid=before.uuid,
                failed_count=after.failed_count,
            )
        elif status is TaskStatus.FAILED:
            metrics.PERMANENT_FAILURES.inc()

    after_commit(conn, done)
