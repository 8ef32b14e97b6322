"""Aggregate reads for the metrics endpoint: a handful of cheap statements over the whole
store, so every replica reports the same figures (jobtask.observability.collector)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from jobtask.store.rows import COUNT_COLUMN
from jobtask.store.schema import TASK_STATUS_COUNTS, events, jobs, workers
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["Stats", "feed_heads", "read_stats"]

# Jobs whose queued tasks a worker may claim now.
_RUNNING_JOB_STATUSES = ("queued", "active")
# The task status each count column of jobs counts.
_COUNTED = {column: status.value for status, column in COUNT_COLUMN.items()}

# Jobs by status, and their tasks by status from the counts each job's row keeps exact (in
# the transaction of every task change): a scan of jobs, not of job_tasks, whose status
# index leaves out active and completed tasks.
_JOBS_BY_STATUS = select(
    jobs.c.status,
    func.count(),
    *(func.sum(jobs.c[column]) for column in TASK_STATUS_COUNTS),
).group_by(jobs.c.status)
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
    jobs_by: dict[str, int] = {}
    tasks_by: Counter[str] = Counter()
    runnable = 0
    for status, n, *sums in await conn.execute(_JOBS_BY_STATUS):
        jobs_by[str(status)] = int(n)
        counts = {
            column: int(count or 0) for column, count in zip(TASK_STATUS_COUNTS, sums, strict=True)
        }
        for column, count in counts.items():
            tasks_by[_COUNTED[column]] += count
        if status in _RUNNING_JOB_STATUSES:
            runnable += counts["n_queued"]
    live = (await conn.execute(_LIVE_WORKERS, {"since": live_since})).scalar()
    head = (await conn.execute(_FEED_HEAD)).scalar()
    tasks = {status: n for status, n in tasks_by.items() if n}
    return Stats(jobs_by, tasks, runnable, int(live or 0), int(head or 0))


async def feed_heads(conn: AsyncConnection, job_uuids: Iterable[str]) -> dict[str, int]:
    """The last event seq of each of these jobs (jobs without events are left out)."""
    uuids = sorted(set(job_uuids))
    if not uuids:
        return {}
    rows = await conn.execute(_JOB_HEADS, {"uuids": uuids})
    return {str(u): int(s) for u, s in rows}
