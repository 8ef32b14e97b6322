"""The end of an attempt: a process's exit, a broken worker stream or an expired lease.

All three end the same way, inside the caller's transaction, with the task's job and the
task locked: the completion rule of the seeds decides (jobtask.domain.rules.decide_exit).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from jobtask.domain.access import may_read
from jobtask.domain.derived import task_on_enter
from jobtask.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from jobtask.domain.rules import decide_exit, handed_back_status
from jobtask.domain.scheduling import FailureRule, failure_reason, permanent_rule
from jobtask.domain.statuses import JOB_HOLDING, TaskStatus, check_task_move
from jobtask.manager import blocklisting, lifecycle
from jobtask.manager.context import Caller, Settings, utcnow
from jobtask.observability import lifecycle as observe
from jobtask.store import attempts as attempt_store
from jobtask.store.rows import JobRow, TaskRow, task_after
from sqlalchemy.ext.asyncio import AsyncConnection

T = TaskStatus
FAILED_LOG_LIMIT = 64 * 1024
# An attempt that ends in one of these did not complete its task, so the tasks it created
# go (seed: "If job task A fails, tasks B, C, D will be deleted"; Arvados deletes them when
# `success` becomes false, which crunch-job sets on a temporary failure too). None of them
# ran: a child waits for its creator to complete. Kept, they would be created again by the
# task's next attempt, and run twice over.
_REDONE = frozenset({T.FAILED, T.SOFT_FAILED})


def check_readable(caller: Caller, task: TaskRow) -> TaskRow:
    check_task_owner(caller, task.uuid, task.owner_uuid)
    return task


def check_task_owner(caller: Caller, uuid: str, owner_uuid: str) -> None:
    if not may_read(caller, owner_uuid):
        raise NotFound(f"task {uuid} not found")


async def finish_task(
    conn: AsyncConnection,
    settings: Settings,
    job: JobRow,
    task: TaskRow,
    status: TaskStatus,
    *,
    now: dt.datetime,
    caller: Caller,
    extra: Mapping[str, Any] | None = None,
    reported: Mapping[str, Any] | None = None,
    settle: bool = True,
) -> TaskRow:
    """Moves a task to its decided status; a task failed for good loses its children.
    `reported`: what the process reported last, written with the move (the move's own
    changes win). `settle=False`: the caller settles the job itself (once for several
    tasks)."""
    check_task_move(task.status, status)
    changes = {**(reported or {}), **task_on_enter(status, now=now), **(extra or {})}
    if status is T.FAILED and "failure_reason" not in changes:
        # Decided without a process's exit: by a report of the manager or an admin.
        success = (reported or {}).get("success", task.success)
        rule = permanent_rule(None, success, retry_limit_hit=False)
        changes["failure_reason"] = failure_reason(
            rule,
            f"the task was reported with success={success} while no process ran it",
            task_uuid=task.uuid,
            worker_id=task.worker_id,
            exit_code=None,
            signal=None,
            log="",
        )
    task = await lifecycle.write_task(conn, job, task, changes, now=now, caller=caller)
    if status in _REDONE:
        await lifecycle.delete_descendants(conn, job, task.uuid, now=now)
    if status is T.FAILED:
        await blocklisting.record_job_failure(conn, settings, job, task, now=now)
    if settle:
        await lifecycle.settle(conn, settings, job.id, now=now)
    return task


async def finish_attempt(
    conn: AsyncConnection,
    settings: Settings,
    caller: Caller,
    job: JobRow,
    task: TaskRow,
    *,
    lease_id: str,
    exit_code: int | None,
    signal: int | None,
    log: str,
    handed_back: bool = False,
    outcome_reason: str | None = None,
    reported: Mapping[str, Any] | None = None,
    settle: bool = True,
) -> TaskRow:
    """Ends the current attempt of a locked task (its job locked first). `reported`: the
    process's last report, not yet written: it counts for the completion rule and is
    written with the decision, in one UPDATE (see finish_task). `settle=False`: the caller
    settles the job afterwards."""
    if reported:
        task = task_after(task, reported)
    now = utcnow()
    check_readable(caller, task)
    if lease_id:
        if task.lease_id != lease_id:
            raise FailedPrecondition(
                f"lease {lease_id} is not the current lease of task {task.uuid}"
            )
    elif not (caller.is_system or caller.is_admin):
        raise InvalidArgument("lease_id", "is required")
    if task.status != T.ACTIVE:
        # Canceled meanwhile: the exit only closes the attempt, and the lease with it.
        await close_attempt(
            conn, task, now, f"ended after {task.status}", exit_code=exit_code, signal=signal
        )
        return await release_lease(conn, task)
    # A pausing job told its workers to stop: what they leave undecided waits paused.
    holding = job.status in JOB_HOLDING
    if handed_back:
        await close_attempt(conn, task, now, "handed back", exit_code=exit_code, signal=signal)
        target = handed_back_status(holding)
        changes = task_on_enter(target, now=now)
        changes["progress"] = task.progress
        task = await lifecycle.write_task(conn, job, task, changes, now=now, caller=caller)
        # Handed back, the task runs again from its start (see _REDONE).
        await lifecycle.delete_descendants(conn, job, task.uuid, now=now)
        if settle:
            await lifecycle.settle(conn, settings, job.id, now=now)
        return task
    decision = decide_exit(
        task.progress,
        task.success,
        task.failed_count,
        settings.retry_limit,
        job_holding=holding,
    )
    extra: dict[str, Any] = {}
    status = decision.status
    rule: FailureRule | None = None
    if decision.temporary_failure:
        how = (
            f"exit code {exit_code}"
            if exit_code is not None
            else (f"signal {signal}" if signal is not None else "no exit status")
        )
        reason = outcome_reason or decision.reason
        failures = task.failed_count + 1
        extra = {
            "failed_count": failures,
            "failed_at": now,
            "failed_log": (f"{reason} ({how})\n" + log)[-FAILED_LOG_LIMIT:],
        }
        if task.worker_id:
            await attempt_store.remember_failure(conn, task.id, task.worker_id, now)
            # Only a process that ended on the worker counts against it: an expired lease
            # or a broken stream says nothing about the worker's ability to run the job.
            ended = exit_code is not None or signal is not None
            if ended and not await blocklisting.block_if_due(conn, settings, job, task, now=now):
                status, rule = T.FAILED, FailureRule.BLOCKLIST
        if status is T.SOFT_FAILED:
            backoff = settings.backoff.of(job.runtime_constraints, task.runtime_constraints)
            not_before = now + dt.timedelta(seconds=backoff.delay(failures))
            lease_end = task.lease_expires_at
            if exit_code is None and signal is None and lease_end is not None:
                # No exit: the stream was cut, and the process may still run where the
                # server cannot reach it. Its worker stops it by its own clock before the
                # lease would have expired; no other worker may start it before then.
                not_before = max(not_before, lease_end)
            extra["runnable_after"] = not_before
    if status is T.FAILED:
        if rule is None:
            rule = permanent_rule(exit_code, task.success, decision.temporary_failure)
        message = (
            "the job blocklist left no live worker that could run it"
            if rule is FailureRule.BLOCKLIST
            else decision.reason
        )
        extra["failure_reason"] = failure_reason(
            rule,
            message,
            task_uuid=task.uuid,
            worker_id=task.worker_id,
            exit_code=exit_code,
            signal=signal,
            log=log,
        )
    await close_attempt(conn, task, now, status.value, exit_code=exit_code, signal=signal)
    decided = await finish_task(
        conn,
        settings,
        job,
        task,
        status,
        now=now,
        caller=caller,
        extra=extra,
        reported=reported,
        settle=settle,
    )
    observe.attempt_ended(conn, task, decided, now, exit_code=exit_code, signal=signal)
    return decided


async def close_attempt(
    conn: AsyncConnection,
    task: TaskRow,
    now: dt.datetime,
    outcome: str,
    *,
    exit_code: int | None = None,
    signal: int | None = None,
) -> None:
    """Ends the task's current attempt, keeping the process's exit code or signal."""
    if task.lease_id:
        await attempt_store.close_attempt(
            conn,
            task.id,
            task.attempt,
            ended=now,
            outcome=outcome,
            exit_code=exit_code,
            signal=signal,
            lease_expires=task.lease_expires_at,
        )


async def release_lease(conn: AsyncConnection, task: TaskRow) -> TaskRow:
    """Forgets the lease of a task that is no longer active (no event: leases are not
    part of the resource)."""
    if task.lease_id is None:
        return task
    await attempt_store.release_lease(conn, task.id)
    return task_after(task, {"lease_id": None, "lease_expires_at": None, "token_digest": None})
