"""Lifecycle events of jobs and tasks: a log line and a metric each, after commit.

The managers call these inside their write transactions; nothing is logged or counted
unless (and until) the transaction commits. No SQL: the rows the manager already holds.
The metrics go through the transaction's tally (count_after_commit): a claim or a completion
group of 100 tasks steps each counter once; a log line is made after commit as before, and
no callback is left for it when the events log is off (the metrics cost a closure and a call
per task and per job moved: ~30 us a one-task job on the 2-core machine)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from jobtask.domain.rules import EXIT_STATUSES
from jobtask.domain.statuses import JobStatus, TaskStatus
from jobtask.observability import metrics
from jobtask.observability.logs import EVENTS, emit
from jobtask.store.database import after_commit, count_after_commit, observe_after_commit
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

    count_after_commit(conn, metrics.JOBS_SUBMITTED, len(jobs))
    if not EVENTS.isEnabledFor(logging.INFO):
        return

    def done() -> None:
        for job in jobs:
            emit(
                "job_submitted",
                job_uuid=job.uuid,
                owner_uuid=job.owner_uuid,
                script=job.script,
                priority=job.priority,
            )

    after_commit(conn, done)


# The finished-job counter of each final status (labels() looks the child up under a lock).
_JOBS_FINISHED = {status: metrics.JOBS_FINISHED.labels(status.value) for status in _JOB_FINAL}


def job_moved(conn: AsyncConnection, job: JobRow, previous: JobStatus) -> None:
    status = job.status
    if status == previous:
        return
    final = status in _JOB_FINAL
    if final:
        count_after_commit(conn, _JOBS_FINISHED[status])
    if not EVENTS.isEnabledFor(logging.INFO):
        return

    def done() -> None:
        event = "job_finished" if final else "job_status"
        emit(event, job_uuid=job.uuid, status=status.value, previous=previous.value)

    after_commit(conn, done)


def task_claimed(conn: AsyncConnection, queued: TaskRow, task: TaskRow, now: dt.datetime) -> None:
    """`queued`: the task's row before the claim (its last change made it runnable)."""
    waited = _seconds(queued.modified_at, now)
    count_after_commit(conn, metrics.TASKS_CLAIMED)
    if waited is not None:
        observe_after_commit(conn, metrics.DISPATCH_SECONDS, waited)
    if not EVENTS.isEnabledFor(logging.INFO):  # (once a task: its fields not built)
        return

    def done() -> None:
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
    count_after_commit(conn, metrics.LEASES_EXPIRED)

    def done() -> None:
        emit(
            "lease_expired",
            job_uuid=task.job_uuid,
            task_uuid=task.uuid,
            worker=task.worker_id,
            attempt=task.attempt,
        )

    after_commit(conn, done)


# The finished-attempt counter of each status a decided attempt ends in, and of no other
# (each child made here is exported, at 0 until counted; labels() looks the child up under
# a lock, per call: once per attempt ended, on the report path).
_FINISHED = {status: metrics.TASKS_FINISHED.labels(status.value) for status in EXIT_STATUSES}


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
    finished = _FINISHED.get(status)
    if finished is not None:  # (always, by decide_exit; a metric never fails a report)
        count_after_commit(conn, finished)
    if ran is not None:
        observe_after_commit(conn, metrics.TASK_RUN_SECONDS, ran)
    if status is TaskStatus.SOFT_FAILED:
        count_after_commit(conn, metrics.TASK_RETRIES)
    elif status is TaskStatus.FAILED:
        count_after_commit(conn, metrics.PERMANENT_FAILURES)
    if not EVENTS.isEnabledFor(logging.INFO):  # (its fields are not built for nothing)
        return

    def done() -> None:
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
            emit(
                "task_retried",
                job_uuid=before.job_uuid,
                task_uuid=before.uuid,
                failed_count=after.failed_count,
            )

    after_commit(conn, done)
