"""Status changes applied inside one write transaction, with their ripples and events.

Lock order, always: the job row first, then its task rows. On PostgreSQL this also orders
each job's events: whoever holds the job row appends its events before the next holder.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection, Mapping
from typing import Any

from jobtask.domain import ripple
from jobtask.domain.derived import job_on_enter, task_on_enter
from jobtask.domain.statuses import JobStatus, TaskStatus, check_job_move
from jobtask.domain.uuids import TASK_INFIX, new_uuid
from jobtask.manager.context import Caller, Settings
from jobtask.observability import lifecycle as observe
from jobtask.store import feed, job_writes, task_writes
from jobtask.store.locks import JOB_BY_ID, lock_job, lock_task, lock_tasks, try_lock_job
from jobtask.store.records import (
    COUNT_COLUMN,
    Record,
    job_after,
    job_record,
    task_counts,
    task_record,
    to_json,
)
from jobtask.store.schema import job_tasks, jobs
from sqlalchemy import Row, Table, Update, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "bulk_move",
    "combined_output",
    "delete_descendants",
    "insert_task",
    "insert_tasks",
    "lock_job",
    "lock_task",
    "lock_tasks",
    "move_job",
    "new_task_row",
    "recount",
    "reload_job",
    "settle",
    "settle_job",
    "settle_many",
    "shift_count",
    "try_lock_job",
    "write_job",
    "write_task",
]


@functools.lru_cache(maxsize=512)
def _versioned_update(table: Table, columns: tuple[str, ...]) -> Update:
    """UPDATE of one row of jobs or job_tasks setting `columns` (parameters v_<column>),
    bumping its version; one per table and set of columns written (a few dozen exist)."""
    return (
        update(table)
        .where(table.c.id == bindparam("v_id"))
        .values(
            {
                **{name: bindparam(f"v_{name}") for name in columns},
                "version": table.c.version + 1,
                "modified_at": bindparam("v_modified_at"),
                "modified_by_user_uuid": bindparam("v_modified_by_user_uuid"),
                "modified_by_client_uuid": bindparam("v_modified_by_client_uuid"),
            }
        )
        .returning(*table.c)
    )


async def _write_row(
    conn: AsyncConnection,
    table: Table,
    row_id: int,
    changes: Mapping[str, Any],
    *,
    now: dt.datetime,
    caller: Caller,
) -> Row[Any]:
    params = {f"v_{name}": value for name, value in changes.items()}
    params.update(
        v_id=row_id,
        v_modified_at=now,
        v_modified_by_user_uuid=caller.user_uuid,
        v_modified_by_client_uuid=caller.client_uuid,
    )
    return (await conn.execute(_versioned_update(table, tuple(sorted(changes))), params)).one()


@functools.lru_cache(maxsize=64)
def _count_shift(old_col: str, new_col: str) -> Update:
    return (
        update(jobs)
        .where(jobs.c.id == bindparam("job_id"))
        .values({old_col: jobs.c[old_col] - 1, new_col: jobs.c[new_col] + 1})
    )


def new_task_row(
    settings: Settings,
    job: Record,
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
        "uuid": new_uuid(settings.cluster_id, TASK_INFIX),
        "job_id": job["id"],
        "job_uuid": job["uuid"],
        "owner_uuid": job["owner_uuid"],
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
    conn: AsyncConnection, rows: list[dict[str, Any]], *, now: dt.datetime
) -> list[Record]:
    """Inserts tasks (new_task_row's) into locked jobs and appends their task_created
    events, a statement each whatever their number; the caller counts them in their jobs'
    rows."""
    tasks = await task_writes.insert_tasks(conn, rows)
    await feed.append_many(
        conn,
        [
            {
                "created_at": now,
                "job_uuid": task["job_uuid"],
                "task_uuid": task["uuid"],
                "type": feed.TASK_CREATED,
                "payload": to_json(task),
            }
            for task in tasks
        ],
    )
    return tasks


async def insert_task(
    conn: AsyncConnection,
    settings: Settings,
    job: Record,
    *,
    status: TaskStatus,
    now: dt.datetime,
    caller: Caller,
    sequence: int = 0,
    parameters: Mapping[str, Any] | None = None,
    runtime_constraints: Mapping[str, Any] | None = None,
    created_by: str | None = None,
) -> Record:
    """One task of insert_tasks."""
    row = new_task_row(
        settings,
        job,
        status=status,
        now=now,
        caller=caller,
        sequence=sequence,
        parameters=parameters,
        runtime_constraints=runtime_constraints,
        created_by=created_by,
    )
    return (await insert_tasks(conn, [row], now=now))[0]


async def write_job(
    conn: AsyncConnection,
    job: Record,
    changes: Mapping[str, Any],
    *,
    now: dt.datetime,
    caller: Caller,
) -> Record:
    """Updates the job row (bumping its version) and appends a job_changed event."""
    job = job_record(await _write_row(conn, jobs, job["id"], changes, now=now, caller=caller))
    await feed.append(conn, job["uuid"], feed.JOB_CHANGED, to_json(job), now=now)
    return job


async def write_task(
    conn: AsyncConnection,
    job: Record,
    task: Record,
    changes: Mapping[str, Any],
    *,
    now: dt.datetime,
    caller: Caller,
    event: str | None = feed.TASK_CHANGED,
) -> Record:
    """Updates one task row, keeps the job's status counts and appends an event (None: the
    caller appends its own, as for log chunks). The caller settles the job afterwards when
    the status changed."""
    new = task_record(
        await _write_row(conn, job_tasks, task["id"], changes, now=now, caller=caller)
    )
    if new["status"] != task["status"]:
        await shift_count(conn, job, TaskStatus(task["status"]), TaskStatus(new["status"]))
    if event is None:
        return new
    if event == feed.TASK_PROGRESS:
        payload: dict[str, Any] = {"progress": new["progress"]}
    else:
        payload = to_json(new)
    await feed.append(conn, job["uuid"], event, payload, task_uuid=new["uuid"], now=now)
    return new


async def shift_count(conn: AsyncConnection, job: Record, old: TaskStatus, new: TaskStatus) -> None:
    await conn.execute(_count_shift(COUNT_COLUMN[old], COUNT_COLUMN[new]), {"job_id": job["id"]})


async def recount(conn: AsyncConnection, job_id: int) -> None:
    rows = await conn.execute(
        select(job_tasks.c.status, func.count())
        .where(job_tasks.c.job_id == job_id)
        .group_by(job_tasks.c.status)
    )
    counts = {COUNT_COLUMN[TaskStatus(status)]: n for status, n in rows}
    await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values({col: counts.get(col, 0) for col in COUNT_COLUMN.values()})
    )


async def reload_job(conn: AsyncConnection, job_id: int) -> Record:
    return job_record((await conn.execute(JOB_BY_ID, {"job_id": job_id})).one())


async def bulk_move(
    conn: AsyncConnection, job: Record, move: ripple.TaskMove, *, now: dt.datetime, caller: Caller
) -> int:
    """Moves every task of the job in move.sources to move.target; one event per task."""
    sources = [s.value for s in move.sources]
    changes = task_on_enter(move.target, now=now, reset_attempts=move.reset_attempts)
    rows = list(
        await conn.execute(
            update(job_tasks)
            .where(job_tasks.c.job_id == job["id"], job_tasks.c.status.in_(sources))
            .values(
                **changes,
                version=job_tasks.c.version + 1,
                modified_at=now,
                modified_by_user_uuid=caller.user_uuid,
                modified_by_client_uuid=caller.client_uuid,
            )
            .returning(*job_tasks.c)
        )
    )
    if not rows:
        return 0
    await feed.append_many(
        conn,
        [
            {
                "created_at": now,
                "job_uuid": job["uuid"],
                "task_uuid": r.uuid,
                "type": feed.TASK_CHANGED,
                "payload": to_json(task_record(r)),
            }
            for r in sorted(rows, key=lambda r: r.id)
        ],
    )
    await recount(conn, job["id"])
    return len(rows)


async def move_job(
    conn: AsyncConnection,
    settings: Settings,
    job: Record,
    new: JobStatus,
    *,
    now: dt.datetime,
    caller: Caller,
    locker_uuid: str | None = None,
) -> Record:
    """Moves the job to `new` (checked against the table), ripples to its tasks, and
    follows up until the job rests."""
    for _ in range(ripple.MAX_STEPS):
        previous = JobStatus(job["status"])
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
            changes["output"] = await combined_output(conn, job["id"])
        for move in ripple.on_enter(new, previous):
            await bulk_move(conn, job, move, now=now, caller=caller)
        job = await write_job(conn, job, changes, now=now, caller=caller)
        observe.job_moved(conn, job, previous.value)
        nxt = ripple.follow_up(new, task_counts(job))
        if nxt is None or nxt is new:
            return job
        new = nxt
        # Follow-ups are the manager's own moves.
        caller = settings.system_caller()
    raise RuntimeError(f"job {job['uuid']} did not settle")


async def settle(
    conn: AsyncConnection, settings: Settings, job_id: int, *, now: dt.datetime
) -> Record:
    """After task changes: moves the job if its task counts call for it."""
    return await settle_job(conn, settings, await reload_job(conn, job_id), now=now)


async def settle_many(
    conn: AsyncConnection, settings: Settings, job_ids: Collection[int], *, now: dt.datetime
) -> dict[int, Record]:
    """settle for several jobs at once (their rows locked), with a constant number of
    statements for the usual moves: jobs read in one statement; each job whose counts call
    for a move that ripples to no task and rests there (queued -> active on a claim, active
    -> completed on the last completion) moved set-based (jobtask.store.job_writes), each
    other job by move_job. The jobs as they now are, by id."""
    if not job_ids:
        return {}
    found = await job_writes.jobs_by_id(conn, job_ids)
    system = settings.system_caller()
    simple: list[tuple[Record, JobStatus]] = []
    for job in found.values():
        previous = JobStatus(job["status"])
        nxt = ripple.follow_up(previous, task_counts(job))
        if nxt is None:
            continue
        rests = ripple.follow_up(nxt, task_counts(job)) in (None, nxt)
        if rests and not ripple.on_enter(nxt, previous):
            check_job_move(previous, nxt)
            simple.append((job, nxt))
        else:
            found[job["id"]] = await move_job(conn, settings, job, nxt, now=now, caller=system)
    if not simple:
        return found
    completing = [job["id"] for job, nxt in simple if nxt is JobStatus.COMPLETED]
    outputs = await job_writes.outputs_of(conn, completing)
    written: list[tuple[int, dict[str, Any]]] = []
    events: list[dict[str, Any]] = []
    for job, nxt in simple:
        changes = job_on_enter(
            nxt,
            JobStatus(job["status"]),
            job,
            now=now,
            user_uuid=system.user_uuid,
            client_uuid=system.client_uuid,
            locker_uuid=settings.system_user,
        )
        if nxt is JobStatus.COMPLETED:
            changes["output"] = outputs[job["id"]]
        changes.update(
            version=job["version"] + 1,
            modified_at=now,
            modified_by_user_uuid=system.user_uuid,
            modified_by_client_uuid=system.client_uuid,
        )
        moved = job_after(job, changes)
        written.append((job["id"], changes))
        events.append(
            {
                "created_at": now,
                "job_uuid": moved["uuid"],
                "task_uuid": None,
                "type": feed.JOB_CHANGED,
                "payload": to_json(moved),
            }
        )
        observe.job_moved(conn, moved, job["status"])
        found[job["id"]] = moved
    await job_writes.write_jobs(conn, written)
    await feed.append_many(conn, events)
    return found


async def settle_job(
    conn: AsyncConnection, settings: Settings, job: Record, *, now: dt.datetime
) -> Record:
    """settle, given the job's row as it now is (read in this transaction)."""
    nxt = ripple.follow_up(JobStatus(job["status"]), task_counts(job))
    if nxt is None:
        return job
    return await move_job(conn, settings, job, nxt, now=now, caller=settings.system_caller())


async def combined_output(conn: AsyncConnection, job_id: int) -> str:
    """Tasks' outputs in creation order (crunch-job concatenated manifest fragments)."""
    rows = await conn.execute(
        select(job_tasks.c.output).where(job_tasks.c.job_id == job_id).order_by(job_tasks.c.id)
    )
    return "".join(o for (o,) in rows if o)


async def delete_descendants(
    conn: AsyncConnection, job: Record, task_uuid: str, *, now: dt.datetime
) -> int:
    """Deletes the tasks created by task_uuid, and theirs, recursively (seed: "If job task
    A fails, tasks B, C, D will be deleted")."""
    deleted = 0
    frontier = [task_uuid]
    while frontier:
        rows = list(
            await conn.execute(
                select(job_tasks.c.id, job_tasks.c.uuid).where(
                    job_tasks.c.job_id == job["id"],
                    job_tasks.c.created_by_job_task_uuid.in_(frontier),
                )
            )
        )
        if not rows:
            break
        await conn.execute(delete(job_tasks).where(job_tasks.c.id.in_([r.id for r in rows])))
        await feed.append_many(
            conn,
            [
                {
                    "created_at": now,
                    "job_uuid": job["uuid"],
                    "task_uuid": r.uuid,
                    "type": feed.TASK_DELETED,
                    "payload": {"uuid": r.uuid, "reason": f"its creator {task_uuid} failed"},
                }
                for r in rows
            ],
        )
        deleted += len(rows)
        frontier = [r.uuid for r in rows]
    if deleted:
        await recount(conn, job["id"])
    return deleted
