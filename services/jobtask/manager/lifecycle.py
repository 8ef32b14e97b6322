"""Status changes applied inside one write transaction, with their ripples and events:
the orchestration; every statement is the store's (jobtask.store.task_writes, job_writes,
tasks, feed).

The caller holds the rows' locks (jobtask.store.locks), always in one order: the job row
first, then its task rows. On PostgreSQL this also orders each job's events: whoever holds
the job row appends its events before the next holder.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from jobtask.domain import ripple
from jobtask.domain.derived import job_on_enter, task_on_enter
from jobtask.domain.statuses import JobStatus, JobStatuses, TaskStatus, check_job_move
from jobtask.domain.uuids import TASK_INFIX, ordered_uuid
from jobtask.manager.context import Caller, Settings
from jobtask.observability import lifecycle as observe
from jobtask.store import feed, job_writes, row_cache, task_writes
from jobtask.store import tasks as task_store
from jobtask.store.rows import COUNT_COLUMN, JobRow, TaskRow, job_after, to_json
from jobtask.store.task_writes import TaskWrites
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "bulk_move",
    "delete_descendants",
    "insert_tasks",
    "move_job",
    "new_task_row",
    "settle",
    "settle_job",
    "settle_many",
    "settle_written",
    "write_job",
    "write_task",
]


def new_task_row(
    settings: Settings,
    job: JobRow,
    *,
    status: TaskStatus,
    now: dt.datetime,
    caller: Caller,
    sequence: int = 0,
    parameters: Mapping[str, Any] | None = None,
    runtime_constraints: Mapping[str, Any] | None = None,
    created_by: str | None = None,
) -> dict[str, Any]:
    """The columns of a new task of a locked job (see insert_tasks)."""
    return {
        "uuid": ordered_uuid(settings.cluster_id, TASK_INFIX),
        "job_id": job.id,
        "job_uuid": job.uuid,
        "owner_uuid": job.owner_uuid,
        "created_at": now,
        "modified_at": now,
        "modified_by_user_uuid": caller.user_uuid,
        "modified_by_client_uuid": caller.client_uuid,
        "sequence": sequence,
        "parameters": parameters if parameters is not None else {},
        "runtime_constraints": runtime_constraints if runtime_constraints is not None else {},
        "created_by_job_task_uuid": created_by,
        "status": status.value,
    }


async def insert_tasks(
    conn: AsyncConnection,
    rows: list[dict[str, Any]],
    *,
    now: dt.datetime,
    before: Sequence[dict[str, Any]] = (),
) -> list[TaskRow]:
    """Inserts tasks (new_task_row's) into locked jobs and appends their task_created
    events, a statement each whatever their number; the caller counts them in their jobs'
    rows. `before`: events to append ahead of the tasks' own, in the same statement (a
    submission's job events: each job's comes before its seed's)."""
    tasks = await task_writes.insert_tasks(conn, rows)
    await feed.append_many(
        conn,
        [
            *before,
            *(
                {
                    "created_at": now,
                    "job_uuid": task.job_uuid,
                    "task_uuid": task.uuid,
                    "type": feed.TASK_CREATED,
                    "payload": to_json(task),
                }
                for task in tasks
            ),
        ],
    )
    return tasks


async def write_job(
    conn: AsyncConnection,
    job: JobRow,
    changes: Mapping[str, Any],
    *,
    now: dt.datetime,
    caller: Caller,
) -> JobRow:
    """Updates the job row (bumping its version) and appends a job_changed event."""
    job = await job_writes.write_job_row(
        conn,
        job.id,
        changes,
        now=now,
        user_uuid=caller.user_uuid,
        client_uuid=caller.client_uuid,
    )
    await feed.append(conn, job.uuid, feed.JOB_CHANGED, to_json(job), now=now)
    return job


async def write_task(
    conn: AsyncConnection,
    job: JobRow,
    task: TaskRow,
    changes: Mapping[str, Any],
    *,
    now: dt.datetime,
    caller: Caller,
    event: str | None = feed.TASK_CHANGED,
) -> TaskRow:
    """Updates one task row, keeps the job's status counts and appends an event (None: the
    caller appends its own, as for log chunks). The caller settles the job afterwards when
    the status changed."""
    new = await task_writes.write_task_row(
        conn,
        task.id,
        changes,
        now=now,
        user_uuid=caller.user_uuid,
        client_uuid=caller.client_uuid,
    )
    if new.status != task.status:
        await task_writes.shift_count(conn, job.id, task.status, new.status)
    if event is None:
        return new
    if event == feed.TASK_PROGRESS:
        payload: dict[str, Any] = {"progress": new.progress}
    else:
        payload = to_json(new)
    await feed.append(conn, job.uuid, event, payload, task_uuid=new.uuid, now=now)
    return new


async def bulk_move(
    conn: AsyncConnection, job: JobRow, move: ripple.TaskMove, *, now: dt.datetime, caller: Caller
) -> int:
    """Moves every task of the job in move.sources to move.target; one event per task."""
    changes = task_on_enter(move.target, now=now, reset_attempts=move.reset_attempts)
    moved = await task_writes.move_tasks(
        conn,
        job.id,
        move.sources,
        changes,
        now=now,
        user_uuid=caller.user_uuid,
        client_uuid=caller.client_uuid,
    )
    if not moved:
        return 0
    await feed.append_many(
        conn,
        [
            {
                "created_at": now,
                "job_uuid": job.uuid,
                "task_uuid": task.uuid,
                "type": feed.TASK_CHANGED,
                "payload": to_json(task),
            }
            for task in moved
        ],
    )
    await task_writes.recount(conn, job.id)
    return len(moved)


async def move_job(
    conn: AsyncConnection,
    settings: Settings,
    job: JobRow,
    new: JobStatus,
    *,
    now: dt.datetime,
    caller: Caller,
    locker_uuid: str | None = None,
) -> JobRow:
    """Moves the job to `new` (checked against the table), ripples to its tasks, and
    follows up until the job rests."""
    for _ in range(ripple.MAX_STEPS):
        previous = job.status
        check_job_move(previous, new)
        changes = job_on_enter(
            new,
            previous,
            job,
            now=now,
            user_uuid=caller.user_uuid,
            client_uuid=caller.client_uuid,
            locker_uuid=locker_uuid or settings.system_user,
        )
        if new is JobStatus.COMPLETED:
            # Tasks' outputs in creation order (crunch-job concatenated manifest fragments).
            changes["output"] = (await job_writes.outputs_of(conn, [job.id]))[job.id]
        for move in ripple.on_enter(new, previous):
            await bulk_move(conn, job, move, now=now, caller=caller)
        job = await write_job(conn, job, changes, now=now, caller=caller)
        observe.job_moved(conn, job, previous)
        nxt = ripple.follow_up(new, job.counts)
        if nxt is None or nxt is new:
            return job
        new = nxt
        # Follow-ups are the manager's own moves.
        caller = settings.system_caller()
    raise RuntimeError(f"job {job.uuid} did not settle")


async def settle(
    conn: AsyncConnection, settings: Settings, job_id: int, *, now: dt.datetime
) -> JobRow:
    """After task changes: moves the job if its task counts call for it."""
    return await settle_job(conn, settings, await job_writes.job_by_id(conn, job_id), now=now)


async def settle_written(
    conn: AsyncConnection,
    settings: Settings,
    writes: TaskWrites,
    jobs: Collection[JobRow],
    *,
    now: dt.datetime,
) -> dict[int, JobRow]:
    """settle_many for jobs locked before `writes` took their tasks' changes, then
    `writes` flushed: a job's row as it now is follows from its row as locked and the
    count shifts `writes` took, without reading it again -- unless its row was also written
    directly (`writes.direct`): those are read, after a flush. The usual moves are held in
    `writes` and go out in its flush, the job's counts with them."""
    reread = [job.id for job in jobs if job.id in writes.direct]
    found: dict[int, tuple[JobRow, dict[str, int]]] = {}
    if reread:
        await writes.flush(conn)
        found = {i: (job, {}) for i, job in (await job_writes.jobs_by_id(conn, reread)).items()}
    for job in jobs:
        if job.id not in found:
            found[job.id] = (job, writes.counts_written(job))
    settled = await settle_many(conn, settings, found, now=now, writes=writes)
    await writes.flush(conn)
    # The jobs' rows as they now are (SQLite keeps them at the commit: row_cache).
    row_cache.noted_jobs(conn, settled.values())
    return settled


def _counts(job: JobRow, counts: Mapping[str, int]) -> dict[TaskStatus, int]:
    """The job's task counts once `counts` (count columns' new values) are written."""
    return {status: counts.get(col, getattr(job, col)) for status, col in COUNT_COLUMN.items()}


async def settle_many(
    conn: AsyncConnection,
    settings: Settings,
    found: Mapping[int, tuple[JobRow, dict[str, int]]],
    *,
    now: dt.datetime,
    writes: TaskWrites,
) -> dict[int, JobRow]:
    """settle for several jobs at once (their rows locked, each given as locked with the
    count columns `writes` will change, their values once it is flushed), with a constant
    number of statements for the usual moves: each job whose counts call for a move that
    ripples to no task and rests there (queued -> active on a claim, active -> completed on
    the last completion) moved set-based, held in `writes` (the caller flushes it: the
    job's row written once, its counts with its move, and copied once here: the row as
    locked plus its counts and its move); each other job by move_job, after `writes` is
    flushed. The jobs as they now are, by id."""
    settled: dict[int, JobRow] = {}
    if not found:
        return settled
    system = settings.system_caller()
    simple: list[tuple[JobRow, dict[str, int], JobStatus]] = []
    other: list[tuple[JobRow, JobStatus]] = []
    for job_id, (job, counted) in found.items():
        nxt, rests = _next_move(job, counted)
        if nxt is None:
            settled[job_id] = job_after(job, counted) if counted else job
        elif rests:
            check_job_move(job.status, nxt)
            simple.append((job, counted, nxt))
        else:
            other.append((job_after(job, counted) if counted else job, nxt))
    if other:
        await writes.flush(conn)
    for job, nxt in other:
        settled[job.id] = await move_job(conn, settings, job, nxt, now=now, caller=system)
    if not simple:
        return settled
    # A completing job's output, read only for jobs with tasks this transaction did not
    # write (not a one-task job's).
    outputs: dict[int, str] = {}
    unknown: list[int] = []
    for job, _, nxt in simple:
        if nxt is JobStatuses.COMPLETED:
            known = writes.known_output(job)
            if known is None:
                unknown.append(job.id)
            else:
                outputs[job.id] = known
    if unknown:
        outputs.update(await job_writes.outputs_of(conn, unknown, writes.held_outputs()))
    for job, counted, nxt in simple:
        changes = job_on_enter(
            nxt,
            job.status,
            job,
            now=now,
            user_uuid=system.user_uuid,
            client_uuid=system.client_uuid,
            locker_uuid=settings.system_user,
        )
        if nxt is JobStatuses.COMPLETED:
            changes["output"] = outputs[job.id]
        changes.update(
            version=job.version + 1,
            modified_at=now,
            modified_by_user_uuid=system.user_uuid,
            modified_by_client_uuid=system.client_uuid,
        )
        moved = job_after(job, {**counted, **changes})
        writes.write_job(moved, changes)
        writes.event(moved.uuid, feed.JOB_CHANGED, to_json(moved), task_uuid=None, now=now)
        observe.job_moved(conn, moved, job.status)
        settled[job.id] = moved
    return settled


def _next_move(job: JobRow, counted: dict[str, int]) -> tuple[JobStatus | None, bool]:
    """The move the job's counts (once `counted` is written) call for, if any, and whether
    it is one of settle_many's usual moves: one that ripples to no task and rests there."""
    counts = _counts(job, counted) if counted else job.counts
    nxt = ripple.follow_up(job.status, counts)
    if nxt is None:
        return None, False
    rests = ripple.follow_up(nxt, counts) in (None, nxt)
    return nxt, rests and not ripple.on_enter(nxt, job.status)


def settles_without_statements(found: Mapping[int, tuple[JobRow, dict[str, int]]]) -> bool:
    """Whether settle_many, given `found`, would run no statement of its own: every job
    stays, or makes a usual move other than completing (whose output may be read). A
    guarded claim's jobs must (jobtask.manager.claims: its one statement is the flush)."""
    for job, counted in found.values():
        nxt, usual = _next_move(job, counted)
        if nxt is not None and (not usual or nxt is JobStatuses.COMPLETED):
            return False
    return True


async def settle_job(
    conn: AsyncConnection, settings: Settings, job: JobRow, *, now: dt.datetime
) -> JobRow:
    """settle, given the job's row as it now is (read in this transaction)."""
    nxt = ripple.follow_up(job.status, job.counts)
    if nxt is None:
        return job
    return await move_job(conn, settings, job, nxt, now=now, caller=settings.system_caller())


async def delete_descendants(
    conn: AsyncConnection, job: JobRow, task_uuid: str, *, now: dt.datetime
) -> int:
    """Deletes the tasks created by task_uuid, and theirs, recursively (seed: "If job task
    A fails, tasks B, C, D will be deleted")."""
    deleted = 0
    frontier = [task_uuid]
    while frontier:
        children = await task_store.children_of(conn, job.id, frontier)
        if not children:
            break
        await task_store.delete_tasks(conn, [task_id for task_id, _ in children])
        await feed.append_many(
            conn,
            [
                {
                    "created_at": now,
                    "job_uuid": job.uuid,
                    "task_uuid": uuid,
                    "type": feed.TASK_DELETED,
                    "payload": {"uuid": uuid, "reason": f"its creator {task_uuid} failed"},
                }
                for _, uuid in children
            ],
        )
        deleted += len(children)
        frontier = [uuid for _, uuid in children]
    if deleted:
        await task_writes.recount(conn, job.id)
    return deleted
