"""Flamenco's job blocklist, and the failure reason a failed task leaves on its job.

A worker whose processes failed `blocklist_threshold` tasks of one job is added to the job's
blocklist; claims then skip the job for it while another live worker could run the job's
tasks (jobtask.manager.claims). If adding it leaves no such worker, the task being failed
fails for good instead (rule "blocklist"), as Flamenco fails a job no worker is left for.
Requeueing the job clears the list (jobtask.domain.derived.job_on_enter).
"""

from __future__ import annotations

import datetime as dt

from jobtask.domain.limits import Limits
from jobtask.domain.scheduling import blocklist_entry, blocklist_threshold
from jobtask.manager import lifecycle
from jobtask.manager.context import Settings
from jobtask.store import blocklist as queries
from jobtask.store import claims as claim_queries
from jobtask.store.rows import JobRow, TaskRow
from sqlalchemy.ext.asyncio import AsyncConnection


async def block_if_due(
    conn: AsyncConnection, settings: Settings, job: JobRow, task: TaskRow, *, now: dt.datetime
) -> bool:
    """After the task's worker failed it: blocklists the worker if it has now failed the
    job's threshold of tasks. False when the blocklist leaves no live worker that could run
    the task (the caller fails it for good)."""
    threshold = blocklist_threshold(job.runtime_constraints, settings.blocklist_threshold)
    worker = task.worker_id
    if threshold <= 0 or worker is None:
        return True
    entries, _ = await queries.current(conn, job.id)
    blocked = {e["worker_id"] for e in entries}
    if worker not in blocked:
        failed = await queries.failed_tasks(conn, job.id, worker)
        if failed < threshold:
            return True
        entries.append(blocklist_entry(worker, failed, now))
        blocked.add(worker)
        await lifecycle.write_job(
            conn, job, {"blocklist": entries}, now=now, caller=settings.system_caller()
        )
    limits = Limits.of(job.runtime_constraints, task.runtime_constraints)
    live = await claim_queries.live_workers(conn, now - settings.live_horizon)
    return any(w not in blocked and limits.capable(ram) for w, _, ram in live)


async def record_job_failure(
    conn: AsyncConnection, settings: Settings, job: JobRow, task: TaskRow, *, now: dt.datetime
) -> None:
    """The job keeps the failure reason of its first task that failed for good."""
    reason = task.failure_reason
    if reason is None:
        return
    _, current = await queries.current(conn, job.id)
    if current is None:
        caller = settings.system_caller()
        await lifecycle.write_job(conn, job, {"failure_reason": reason}, now=now, caller=caller)
