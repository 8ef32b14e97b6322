"""Task attempts: each claim opens one, the end of its lease closes it (with the process's
exit code or signal when the worker reported one), and readers list them by task or by job."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from jobtask.store.arrays import among
from jobtask.store.rows import utc
from jobtask.store.schema import job_tasks, jobs, task_attempts, task_failures
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "AttemptRow",
    "close_attempt",
    "close_params",
    "count_job_attempts",
    "count_task_attempts",
    "job_attempts",
    "job_owner",
    "release_lease",
    "remember_failure",
    "task_attempts_of",
    "task_owner",
]


@dataclass(frozen=True)
class AttemptRow:
    task_uuid: str
    job_uuid: str
    attempt: int
    worker_id: str
    node_name: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    outcome: str | None
    exit_code: int | None
    signal: int | None


# Built once: every attempt ends through it, found by its key (one probe of
# uq_task_attempts_task_id_attempt).
_CLOSE = (
    update(task_attempts)
    .where(
        task_attempts.c.task_id == bindparam("task"),
        task_attempts.c.attempt == bindparam("number"),
        task_attempts.c.ended_at.is_(None),
    )
    .values(
        ended_at=bindparam("ended"),
        outcome=bindparam("outcome"),
        exit_code=bindparam("exit_code"),
        signal=bindparam("signal"),
        lease_expires_at=bindparam("lease_expires"),
    )
)
_COLUMNS = (
    job_tasks.c.uuid,
    job_tasks.c.job_uuid,
    task_attempts.c.attempt,
    task_attempts.c.worker_id,
    task_attempts.c.node_name,
    task_attempts.c.started_at,
    task_attempts.c.ended_at,
    task_attempts.c.outcome,
    task_attempts.c.exit_code,
    task_attempts.c.signal,
)
_JOINED = task_attempts.join(job_tasks, job_tasks.c.id == task_attempts.c.task_id)
_BY_TASK = task_attempts.c.task_id == bindparam("task_id")
_BY_JOB = job_tasks.c.job_id == bindparam("job_id")
# Oldest first: ids grow with every claim. The attempts' ids are found first, then read
# through the primary key in its order: the store's sessions plan no sorts, and ordering the
# task's or job's attempts walked every attempt of the table (tests/core/test_read_plans.py).
_FOUND = task_attempts.alias("found")
_FOUND_TASKS = job_tasks.alias("found_tasks")
_TASK_IDS = select(_FOUND.c.id).where(_FOUND.c.task_id == bindparam("task_id"))
_JOB_IDS = (
    select(_FOUND.c.id)
    .select_from(_FOUND.join(_FOUND_TASKS, _FOUND_TASKS.c.id == _FOUND.c.task_id))
    .where(_FOUND_TASKS.c.job_id == bindparam("job_id"))
)
_TASK_LIST = (
    select(*_COLUMNS)
    .select_from(_JOINED)
    .where(among(task_attempts.c.id, _TASK_IDS))
    .order_by(task_attempts.c.id)
    .limit(bindparam("limit"))
    .offset(bindparam("offset"))
)
_JOB_LIST = (
    select(*_COLUMNS)
    .select_from(_JOINED)
    .where(among(task_attempts.c.id, _JOB_IDS))
    .order_by(task_attempts.c.id)
    .limit(bindparam("limit"))
    .offset(bindparam("offset"))
)
_TASK_OWNER = select(job_tasks.c.id, job_tasks.c.owner_uuid).where(
    job_tasks.c.uuid == bindparam("uuid")
)
_JOB_OWNER = select(jobs.c.id, jobs.c.owner_uuid).where(jobs.c.uuid == bindparam("uuid"))
_FAILED_HERE = select(task_failures.c.task_id).where(
    task_failures.c.task_id == bindparam("task_id"),
    task_failures.c.worker_id == bindparam("worker_id"),
)
_REMEMBER_FAILURE = insert(task_failures)
# (Parameters in a WHERE of an UPDATE must not share a column's name.)
_RELEASE_LEASE = (
    update(job_tasks)
    .where(job_tasks.c.id == bindparam("r_task_id"))
    .values(lease_id=None, lease_expires_at=None, token_digest=None)
)
_TASK_COUNT = select(func.count()).select_from(task_attempts).where(_BY_TASK)
_JOB_COUNT = select(func.count()).select_from(_JOINED).where(_BY_JOB)


def _attempt(row: Any) -> AttemptRow:
    m = row._mapping
    started = utc(m["started_at"])
    assert started is not None  # NOT NULL
    exit_code, signal = m["exit_code"], m["signal"]
    return AttemptRow(
        task_uuid=str(m["uuid"]),
        job_uuid=str(m["job_uuid"]),
        attempt=int(m["attempt"]),
        worker_id=str(m["worker_id"]),
        node_name=str(m["node_name"]),
        started_at=started,
        ended_at=utc(m["ended_at"]),
        outcome=None if m["outcome"] is None else str(m["outcome"]),
        exit_code=None if exit_code is None else int(exit_code),
        signal=None if signal is None else int(signal),
    )


def close_params(
    task_id: int,
    attempt: int,
    *,
    ended: dt.datetime,
    outcome: str,
    exit_code: int | None = None,
    signal: int | None = None,
    lease_expires: dt.datetime | None = None,
) -> dict[str, Any]:
    """The parameters that end the task's open attempt number `attempt` (close_attempt,
    and TaskWrites.close_attempt for many at once), keeping when its lease expired as last
    renewed before the end (the history checks that the process ended inside it). The
    task's current attempt is its lease's: the claim that leased it numbered it, and only
    a claim changes job_tasks.attempt. (An UPDATE's parameters are not named as its
    columns: "number".)"""
    return {
        "task": task_id,
        "number": attempt,
        "ended": ended,
        "outcome": outcome,
        "exit_code": exit_code,
        "signal": signal,
        "lease_expires": lease_expires,
    }


async def close_attempt(conn: AsyncConnection, task_id: int, attempt: int, **ending: Any) -> None:
    """Ends the task's open attempt number `attempt` (nothing if it already ended);
    `ending`: as close_params takes it."""
    await conn.execute(_CLOSE, close_params(task_id, attempt, **ending))


async def task_attempts_of(
    conn: AsyncConnection, task_id: int, limit: int, offset: int
) -> list[AttemptRow]:
    rows = await conn.execute(_TASK_LIST, {"task_id": task_id, "limit": limit, "offset": offset})
    return [_attempt(r) for r in rows]


async def count_task_attempts(conn: AsyncConnection, task_id: int) -> int:
    return int((await conn.execute(_TASK_COUNT, {"task_id": task_id})).scalar() or 0)


async def job_attempts(
    conn: AsyncConnection, job_id: int, limit: int, offset: int
) -> list[AttemptRow]:
    rows = await conn.execute(_JOB_LIST, {"job_id": job_id, "limit": limit, "offset": offset})
    return [_attempt(r) for r in rows]


async def count_job_attempts(conn: AsyncConnection, job_id: int) -> int:
    return int((await conn.execute(_JOB_COUNT, {"job_id": job_id})).scalar() or 0)


async def task_owner(conn: AsyncConnection, uuid: str) -> tuple[int, str] | None:
    """The task's row id and owner, for the read check; None if there is no such task."""
    row = (await conn.execute(_TASK_OWNER, {"uuid": uuid})).first()
    return None if row is None else (int(row[0]), str(row[1]))


async def job_owner(conn: AsyncConnection, uuid: str) -> tuple[int, str] | None:
    """The job's row id and owner, for the read check; None if there is no such job."""
    row = (await conn.execute(_JOB_OWNER, {"uuid": uuid})).first()
    return None if row is None else (int(row[0]), str(row[1]))


async def remember_failure(
    conn: AsyncConnection, task_id: int, worker_id: str, now: dt.datetime
) -> None:
    """Records that the task failed on this worker (once per task and worker)."""
    params = {"task_id": task_id, "worker_id": worker_id}
    if (await conn.execute(_FAILED_HERE, params)).first() is None:
        await conn.execute(_REMEMBER_FAILURE, {**params, "failed_at": now})


async def release_lease(conn: AsyncConnection, task_id: int) -> None:
    """Forgets the task's lease (its id, expiry and token)."""
    await conn.execute(_RELEASE_LEASE, {"r_task_id": task_id})
