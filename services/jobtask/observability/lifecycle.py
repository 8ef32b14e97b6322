"""Lifecycle events of jobs and tasks: a log line and a metric each, after commit.

The managers call these inside their write transactions; nothing is logged or counted
unless (and until) the transaction commits. No SQL: the rows the manager already holds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from jobtask.observability import metrics
from jobtask.observability.logs import emit
from jobtask.store.database import after_commit
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["attempt_ended", "job_moved", "job_submitted", "lease_expired", "task_claimed"]

Row = Mapping[str, Any]
_JOB_FINAL = frozenset({"completed", "failed", "canceled"})


def _seconds(since: Any, now: dt.datetime) -> float | None:
    if not isinstance(since, dt.datetime):
        return None
    if since.tzinfo is None and now.tzinfo is not None:
        since = since.replace(tzinfo=now.tzinfo)
    return max(float((now - since).total_seconds()), 0.0)


def job_submitted(conn: AsyncConnection, job: Row) -> None:
    def done() -> None:
        metrics.JOBS_SUBMITTED.inc()
        emit(
            "job_submitted",
            job_uuid=job["uuid"],
            owner_uuid=job["owner_uuid"],
            script=job["script"],
            priority=job["priority"],
        )

    after_commit(conn, done)


def job_moved(conn: AsyncConnection, job: Row, previous: str) -> None:
    status = job["status"]
    if status == previous:
        return

    def done() -> None:
        if status in _JOB_FINAL:
            metrics.JOBS_FINISHED.labels(status).inc()
            emit("job_finished", job_uuid=job["uuid"], status=status, previous=previous)
        else:
            emit("job_status", job_uuid=job["uuid"], status=status, previous=previous)

    after_commit(conn, done)


def task_claimed(conn: AsyncConnection, queued: Row, task: Row, now: dt.datetime) -> None:
    """`queued`: the task's row before the claim (its last change made it runnable)."""
    waited = _seconds(queued.get("modified_at"), now)

    def done() -> None:
        metrics.TASKS_CLAIMED.inc()
        if waited is not None:
            metrics.DISPATCH_SECONDS.observe(waited)
        emit(
            "task_claimed",
            job_uuid=task["job_uuid"],
            task_uuid=task["uuid"],
            worker=task["worker_id"],
            node=task["node_name"],
            attempt=task["attempt"],
            waited_s=None if waited is None else round(waited, 3),
        )

    after_commit(conn, done)


def lease_expired(conn: AsyncConnection, task: Row) -> None:
    def done() -> None:
        metrics.LEASES_EXPIRED.inc()
        emit(
            "lease_expired",
            job_uuid=task["job_uuid"],
            task_uuid=task["uuid"],
            worker=task["worker_id"],
            attempt=task["attempt"],
        )

    after_commit(conn, done)


def attempt_ended(
    conn: AsyncConnection,
    before: Row,
    after: Row,
    now: dt.datetime,
    *,
    exit_code: int | None,
    signal: int | None,
) -> None:
    """An attempt decided by the completion rule: completed, retried or failed for good."""
    status = str(after["status"])
    ran = _seconds(before.get("started_at"), now)

    def done() -> None:
        metrics.TASKS_FINISHED.labels(status).inc()
        if ran is not None:
            metrics.TASK_RUN_SECONDS.observe(ran)
        fields: dict[str, Any] = {
            "job_uuid": before["job_uuid"],
            "task_uuid": before["uuid"],
            "worker": before["worker_id"],
            "attempt": before["attempt"],
            "outcome": status,
            "exit_code": exit_code,
            "signal": signal,
            "ran_s": None if ran is None else round(ran, 3),
        }
        emit("task_finished", **fields)
        if status == "soft-failed":
            metrics.TASK_RETRIES.inc()
            emit(
                "task_retried",
                job_uuid=before["job_uuid"],
                task_uuid=before["uuid"],
                failed_count=after["failed_count"],
            )
        elif status == "failed":
            metrics.PERMANENT_FAILURES.inc()

    after_commit(conn, done)
