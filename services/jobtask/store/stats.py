"""Aggregate reads for the metrics endpoint: a handful of cheap statements over the whole
store, so every replica reports the same figures (jobtask.observability.collector)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from jobtask.store.schema import events, job_tasks, jobs, workers
from sqlalchemy import bindparam, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["Stats", "feed_heads", "ping", "read_stats"]

# Jobs whose queued tasks a worker may claim now.
_RUNNING_JOB_STATUSES = ("queued", "active")

_PING = select(literal(1))
_JOBS_BY_STATUS = select(jobs.c.status, func.count()).group_by(jobs.c.status)
# Served by ix_job_tasks_status_id.
_TASKS_BY_STATUS = select(job_tasks.c.status, func.count()).group_by(job_tasks.c.status)
_RUNNABLE = select(func.coalesce(func.sum(jobs.c.n_queued), 0)).where(
    jobs.c.status.in_(_RUNNING_JOB_STATUSES)
)
_LIVE_WORKERS = select(func.count()).where(workers.c.last_seen_at >= bindparam("since"))
_FEED_HEAD = select(func.max(events.c.seq))
# Served by ix_events_job_uuid_seq.
_JOB_HEADS = (
    select(events.c.job_uuid, func.max(events.c.seq))
    .where(events.c.job_uuid.in_(bindparam("uuids", expanding=True)))
    .group_by(events.c.job_uuid)
)


@dataclass(frozen=True)
class Stats:
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    tasks_by_status: dict[str, int] = field(default_factory=dict)
    runnable_tasks: int = 0
    live_workers: int = 0
    feed_head: int = 0


async def read_stats(conn: AsyncConnection, *, live_since: dt.datetime) -> Stats:
    jobs_by = {str(s): int(n) for s, n in await conn.execute(_JOBS_BY_STATUS)}
    tasks_by = {str(s): int(n) for s, n in await conn.execute(_TASKS_BY_STATUS)}
    runnable = (await conn.execute(_RUNNABLE)).scalar()
    live = (await conn.execute(_LIVE_WORKERS, {"since": live_since})).scalar()
    head = (await conn.execute(_FEED_HEAD)).scalar()
    return Stats(jobs_by, tasks_by, int(runnable or 0), int(live or 0), int(head or 0))


async def feed_heads(conn: AsyncConnection, job_uuids: Iterable[str]) -> dict[str, int]:
    """The last event seq of each of these jobs (jobs without events are left out)."""
    uuids = sorted(set(job_uuids))
    if not uuids:
        return {}
    rows = await conn.execute(_JOB_HEADS, {"uuids": uuids})
    return {str(u): int(s) for u, s in rows}


async def ping(conn: AsyncConnection) -> None:
    """One round trip: the database answers."""
    await conn.execute(_PING)
