"""Leases: those held by a worker session, all renewed in one statement and all read in
one; a single lease renewed or read (RunTask); the expired ones the reaper ends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from jobtask.store.arrays import among, one_of
from jobtask.store.rows import TaskRow, task_row, utc
from jobtask.store.schema import job_tasks, jobs
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class LeaseState:
    """Where one lease stands: its task's status and its job's, and when it expires."""

    task_uuid: str
    lease_id: str
    task_status: str
    job_status: str
    expires_at: dt.datetime | None


# (Parameters in a WHERE of an UPDATE must not share a column's name.) The rows are locked
# in id order, the order in which a group commit locks a job's tasks: two writers taking
# several task rows in different orders could deadlock (PostgreSQL).
# The tasks are found by uuid first, then locked through the primary key in its order: with
# the uuids in the same WHERE, the store's sessions (no sorts) walked the whole primary key
# (tests/core/test_read_plans.py).
_NAMED = job_tasks.alias("named")
_HELD = (
    select(job_tasks.c.id)
    .where(
        among(job_tasks.c.id, select(_NAMED.c.id).where(one_of(_NAMED.c.uuid, "r_uuids"))),
        one_of(job_tasks.c.lease_id, "r_leases"),
        # An expired lease is lost even before the reaper ends its attempt.
        job_tasks.c.lease_expires_at >= bindparam("r_now"),
    )
    .order_by(job_tasks.c.id)
    .with_for_update()
)
_RENEW = (
    update(job_tasks)
    .where(job_tasks.c.id.in_(_HELD.scalar_subquery()))
    .values(lease_expires_at=bindparam("r_expires"))
    .returning(job_tasks.c.uuid, job_tasks.c.lease_id, job_tasks.c.status, job_tasks.c.job_id)
)
_JOB_STATUSES = select(jobs.c.id, jobs.c.status).where(one_of(jobs.c.id, "job_ids"))
_STATES = (
    select(
        job_tasks.c.uuid,
        job_tasks.c.lease_id,
        job_tasks.c.status,
        job_tasks.c.lease_expires_at,
        jobs.c.status.label("job_status"),
    )
    .join(jobs, jobs.c.id == job_tasks.c.job_id)
    .where(
        one_of(job_tasks.c.uuid, "uuids"),
        one_of(job_tasks.c.lease_id, "leases"),
    )
)


# One lease renewed if it is still its task's and live (parameters b_uuid, b_lease, b_now,
# b_expires); each user adds what it reads back.
_RENEW_LIVE = (
    update(job_tasks)
    .where(
        job_tasks.c.uuid == bindparam("b_uuid"),
        job_tasks.c.lease_id == bindparam("b_lease"),
        job_tasks.c.lease_expires_at >= bindparam("b_now"),
    )
    .values(lease_expires_at=bindparam("b_expires"))
)
_RENEW_ONE = _RENEW_LIVE.returning(*job_tasks.c)
# The longest expired first, through ix_job_tasks_lease_expires_at: ordered by job id, under
# the store's session settings (no sorts) the planner walked every task's job index instead
# (tests/core/test_read_plans.py); expired() puts them in job id order.
_EXPIRED = (
    select(job_tasks.c.uuid, job_tasks.c.job_id)
    .where(job_tasks.c.lease_expires_at < bindparam("now"), job_tasks.c.lease_id.is_not(None))
    .order_by(job_tasks.c.lease_expires_at)
    .limit(bindparam("limit"))
)


@dataclass(frozen=True, slots=True)
class LeaseCheck:
    """A task's lease as RunTask checks it: the task's owner and status, its lease and
    when it expires, and its job's status."""

    owner_uuid: str
    status: str
    lease_id: str | None
    expires_at: dt.datetime | None
    job_status: str


@dataclass(frozen=True, slots=True)
class Renewed:
    """A lease renewed by a heartbeat: its task's status and worker, its job's status."""

    status: str
    job_status: str
    worker_id: str | None


# Built once: every RunTask stream reads the first when it opens and when woken, and runs
# the heartbeat's two on every heartbeat.
_LEASE_STATE = (
    select(
        job_tasks.c.owner_uuid,
        job_tasks.c.status,
        job_tasks.c.lease_id,
        job_tasks.c.lease_expires_at,
        jobs.c.status.label("job_status"),
    )
    .join(jobs, jobs.c.id == job_tasks.c.job_id)
    .where(job_tasks.c.uuid == bindparam("uuid"))
)
_HEARTBEAT = _RENEW_LIVE.returning(job_tasks.c.status, job_tasks.c.job_id, job_tasks.c.worker_id)
_JOB_STATUS = select(jobs.c.status).where(jobs.c.id == bindparam("job_id"))


def live(expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a lease that expires at `expires_at` is live at `now`: an expired lease is
    lost at once (no report, renewal or exit counts), even before the reaper ends its
    attempt."""
    expires = utc(expires_at)
    return expires is None or expires >= now


async def lease_state(conn: AsyncConnection, task_uuid: str) -> LeaseCheck | None:
    """The task's lease as it stands (one SELECT; None: no such task)."""
    row = (await conn.execute(_LEASE_STATE, {"uuid": task_uuid})).first()
    if row is None:
        return None
    return LeaseCheck(
        row.owner_uuid, row.status, row.lease_id, row.lease_expires_at, row.job_status
    )


async def heartbeat(
    conn: AsyncConnection, task_uuid: str, lease_id: str, expires: dt.datetime, now: dt.datetime
) -> Renewed | None:
    """Extends one lease to `expires` if it is still its task's and has not expired by
    `now` (one UPDATE, no lock, no version bump), then reads its job's status; None: the
    lease was lost."""
    params = {"b_uuid": task_uuid, "b_lease": lease_id, "b_expires": expires, "b_now": now}
    row = (await conn.execute(_HEARTBEAT, params)).first()
    if row is None:
        return None
    job_status = (await conn.execute(_JOB_STATUS, {"job_id": row.job_id})).scalar_one()
    return Renewed(row.status, job_status, row.worker_id)


async def renew_one(
    conn: AsyncConnection, task_uuid: str, lease_id: str, expires: dt.datetime, now: dt.datetime
) -> TaskRow | None:
    """Extends one lease to `expires` if it is still its task's and has not expired by
    `now`: the task as written (None: the lease was lost)."""
    params = {"b_uuid": task_uuid, "b_lease": lease_id, "b_expires": expires, "b_now": now}
    row = (await conn.execute(_RENEW_ONE, params)).first()
    return None if row is None else task_row(row)


async def expired(conn: AsyncConnection, now: dt.datetime, limit: int) -> list[tuple[str, int]]:
    """(task uuid, job id) of up to `limit` leases expired by `now`, the longest expired,
    in job id order (read without locks: the reaper locks each job, then its task, and
    looks again)."""
    rows = await conn.execute(_EXPIRED, {"now": now, "limit": limit})
    return sorted(((str(uuid), int(job_id)) for uuid, job_id in rows), key=lambda r: r[1])


async def renew(
    conn: AsyncConnection, leases: Mapping[str, str], expires: dt.datetime, now: dt.datetime
) -> list[LeaseState]:
    """Extends every lease of `leases` (task uuid -> lease id) that is still its task's
    and has not expired by `now` to `expires` (one UPDATE); the leases found, with their
    tasks' and jobs' statuses. A lease not returned is lost."""
    if not leases:
        return []
    params = {
        "r_uuids": list(leases),
        "r_leases": list(leases.values()),
        "r_expires": expires,
        "r_now": now,
    }
    rows = list(await conn.execute(_RENEW, params))
    if not rows:
        return []
    job_ids = sorted({row.job_id for row in rows})
    status_of = dict((await conn.execute(_JOB_STATUSES, {"job_ids": job_ids})).all())
    return [
        LeaseState(row.uuid, row.lease_id, row.status, status_of[row.job_id], expires)
        for row in rows
    ]


async def states(conn: AsyncConnection, leases: Mapping[str, str]) -> list[LeaseState]:
    """The leases of `leases` (task uuid -> lease id) still held (one SELECT): a lease not
    returned is lost."""
    if not leases:
        return []
    rows = await conn.execute(_STATES, {"uuids": list(leases), "leases": list(leases.values())})
    return [
        LeaseState(row.uuid, row.lease_id, row.status, row.job_status, utc(row.lease_expires_at))
        for row in rows
    ]
