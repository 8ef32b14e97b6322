"""Task use cases, each one transaction: create (child tasks too), read, list, the
progress PATCH, delete, and the end of a task's process (the completion rule)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobtask.domain.access import may_read
from jobtask.domain.derived import task_on_enter
from jobtask.domain.errors import FailedPrecondition, InvalidArgument, NotFound, each_request
from jobtask.domain.query import ListQuery
from jobtask.domain.resources import TASK_ATTRS, Access
from jobtask.domain.rules import decide_exit
from jobtask.domain.statuses import JobStatus, TaskStatus, check_task_move
from jobtask.domain.updates import (
    check_constraints,
    check_known,
    check_progress,
    check_value,
    plan_update,
)
from jobtask.domain.uuids import JOB_INFIX, TASK_INFIX, check_uuid
from jobtask.manager import attempts, lifecycle
from jobtask.manager.attempts import check_readable
from jobtask.manager.context import Caller, Settings, utcnow
from jobtask.store import feed, leases, locks, task_writes
from jobtask.store import jobs as job_store
from jobtask.store import tasks as task_store
from jobtask.store.database import Database, claims_unchanged
from jobtask.store.rows import JobRow, TaskRow
from sqlalchemy.ext.asyncio import AsyncConnection

T, J = TaskStatus, JobStatus
# Jobs that take no new tasks.
_CLOSED = frozenset({J.CANCELED, J.CANCEL_REQUESTED, J.FAILED})
# Task statuses a person may ask for through UpdateTask's `status`.
_REQUESTABLE = frozenset({T.CANCELED, T.QUEUED})
_PROCESS_FIELDS = ("progress", "success", "output")


def may_report(caller: Caller, task: TaskRow) -> bool:
    """Seed 000: a task is PATCHed only by the worker process dispatched to it, and by the
    job manager itself (and admins)."""
    return caller.is_system or caller.is_admin or caller.task_uuid == task.uuid


# Tasks per BatchCreateTasks call: bounds one transaction (and the job's row lock).
MAX_BATCH_CREATE = 1000


class TaskManager:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    # -- creation -----------------------------------------------------------------------

    def _task_spec(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        spec = check_known(TASK_ATTRS, raw)
        for name, value in list(spec.items()):
            access = TASK_ATTRS[name].access
            if access in (Access.MANAGER, Access.STATUS, Access.PROCESS):
                if value in (None, "", {}, 0, 0.0, False) or (
                    name == "status" and value == T.QUEUED
                ):
                    del spec[name]
                    continue
                raise InvalidArgument(name, "is set by the job manager or the task's process")
            spec[name] = check_value(name, TASK_ATTRS[name], value)
        spec["job_uuid"] = check_uuid(spec.get("job_uuid") or "", JOB_INFIX, "job_uuid")
        if spec.get("created_by_job_task_uuid"):
            check_uuid(spec["created_by_job_task_uuid"], TASK_INFIX, "created_by_job_task_uuid")
        spec["runtime_constraints"] = check_constraints(
            spec.get("runtime_constraints") or {}, "runtime_constraints"
        )
        spec.setdefault("parameters", {})
        spec.setdefault("sequence", 0)
        return spec

    async def create(self, caller: Caller, raw: Mapping[str, Any]) -> TaskRow:
        return (await self._create(caller, [self._task_spec(raw)], batch=False))[0]

    async def create_many(self, caller: Caller, raws: Sequence[Mapping[str, Any]]) -> list[TaskRow]:
        """Creates several tasks in one transaction, all or none (BatchCreateTasks): each
        job locked once, the tasks inserted, their events appended and each job's counts
        shifted with one statement each. Errors name the request: requests[i].job_task.…"""
        if not raws:
            raise InvalidArgument("requests", "is required: at least one task")
        if len(raws) > MAX_BATCH_CREATE:
            raise InvalidArgument("requests", f"at most {MAX_BATCH_CREATE} tasks per call")
        specs = each_request("job_task", raws, self._task_spec)
        return await self._create(caller, specs, batch=True)

    async def _create(
        self, caller: Caller, specs: list[dict[str, Any]], *, batch: bool
    ) -> list[TaskRow]:
        def named(i: int, field: str) -> str:
            return f"requests[{i}].job_task.{field}" if batch else field

        async def run(conn: AsyncConnection) -> list[TaskRow]:
            now = utcnow()
            if len({spec["job_uuid"] for spec in specs}) == 1:
                one = await locks.lock_job(conn, uuid=specs[0]["job_uuid"])
                by_uuid = {one.uuid: one}
            else:
                by_uuid = await locks.lock_jobs_by_uuid(conn, {s["job_uuid"] for s in specs})
            # The jobs (and statuses) of the caller's own task and of the parents: one read (a
            # task creating its children names itself as their parent).
            named_tasks = [caller.task_uuid, *(s.get("created_by_job_task_uuid") for s in specs)]
            known = {uuid for uuid in named_tasks if uuid}
            found = await task_store.jobs_and_statuses_of(conn, known) if known else {}
            job_of = {uuid: job for uuid, (job, _) in found.items()}
            rows: list[dict[str, Any]] = []
            for i, spec in enumerate(specs):
                job = by_uuid.get(spec["job_uuid"])
                if job is None or not may_read(caller, job.owner_uuid):
                    raise NotFound(f"job {spec['job_uuid']} not found")
                # A task's own token creates tasks in its own job only.
                if caller.task_uuid is not None and job_of.get(caller.task_uuid) != job.uuid:
                    raise NotFound(f"job {job.uuid} not found")
                status = job.status
                if status in _CLOSED:
                    raise FailedPrecondition(f"job {job.uuid} is {status}: it takes no new tasks")
                parent = spec.get("created_by_job_task_uuid")
                if parent and job_of.get(parent) != job.uuid:
                    raise InvalidArgument(
                        named(i, "created_by_job_task_uuid"),
                        f"{parent} is not a task of job {job.uuid}",
                    )
                # A task created while its job pauses waits paused like its siblings.
                initial = T.PAUSED if status in (J.PAUSED, J.PAUSE_REQUESTED) else T.QUEUED
                rows.append(
                    lifecycle.new_task_row(
                        self.settings,
                        job,
                        status=initial,
                        now=now,
                        caller=caller,
                        sequence=spec["sequence"],
                        parameters=spec["parameters"],
                        runtime_constraints=spec["runtime_constraints"],
                        created_by=parent or None,
                    )
                )
            tasks = await lifecycle.insert_tasks(conn, rows, now=now)
            # A task runs only once the task that created it completed: if none of these
            # tasks' creators has (the fan-out's first task queueing its work, under the
            # job's lock, which a creator's completion takes too), they make nothing
            # claimable, and waiting claims are not woken to read through them all -- each
            # commit of a fan-out's creation did, every claim reading every task created so
            # far, its time growing with the fan-out's size.
            if all(
                spec.get("created_by_job_task_uuid") in found
                and found[spec["created_by_job_task_uuid"]][1] != T.COMPLETED
                for spec in specs
            ):
                claims_unchanged(conn)
            for job in by_uuid.values():
                counted = [t for t in tasks if t.job_id == job.id]
                if not counted:
                    continue
                added = Counter(t.status for t in counted)
                moved = await job_store.count_new_tasks(conn, job.id, added)
                await lifecycle.settle_job(conn, self.settings, moved, now=now)
            return tasks

        return await self.db.transact(run)

    # -- reading ------------------------------------------------------------------------

    async def get(self, caller: Caller, uuid: str) -> TaskRow:
        check_uuid(uuid, TASK_INFIX, "uuid")
        async with self.db.read() as conn:
            task = await task_store.task_by_uuid(conn, uuid)
        if task is None:
            raise NotFound(f"task {uuid} not found")
        return check_readable(caller, task)

    async def list(self, caller: Caller, query: ListQuery) -> tuple[list[TaskRow], int | None]:
        async with self.db.read() as conn:
            return await task_store.list_tasks(
                conn, caller, query, cluster_id=self.settings.cluster_id
            )

    # -- changes ------------------------------------------------------------------------

    async def update(self, caller: Caller, uuid: str, raw: Mapping[str, Any]) -> TaskRow:
        check_uuid(uuid, TASK_INFIX, "uuid")
        changes = check_known(TASK_ATTRS, raw)
        status = changes.pop("status", None)
        for name, value in changes.items():
            changes[name] = check_value(name, TASK_ATTRS[name], value)
        if changes.get("progress") is not None:
            check_progress(changes["progress"])

        async def run(conn: AsyncConnection) -> TaskRow:
            now = utcnow()
            job, task = await locks.lock_task(conn, uuid)
            check_readable(caller, task)
            effective = plan_update(TASK_ATTRS, task, changes, may_report=may_report(caller, task))
            if effective:
                task = await self._report(conn, caller, job, task, effective, now)
            if status is not None and status != task.status:
                task = await self._request_status(conn, caller, job, task, TaskStatus(status), now)
            return task

        return await self.db.transact(run)

    async def _report(
        self,
        conn: AsyncConnection,
        caller: Caller,
        job: JobRow,
        task: TaskRow,
        changes: dict[str, Any],
        now: dt.datetime,
    ) -> TaskRow:
        """Progress, output and success from the task's process (or the manager)."""
        current = task.status
        if current in (T.COMPLETED, T.FAILED, T.CANCELED) and set(changes) & set(_PROCESS_FIELDS):
            raise FailedPrecondition(
                f"task {task.uuid} is {current}: requeue it before reporting on it"
            )
        event = feed.TASK_PROGRESS if set(changes) == {"progress"} else feed.TASK_CHANGED
        task = await lifecycle.write_task(
            conn, job, task, changes, now=now, caller=caller, event=event
        )
        if current is not T.ACTIVE and task.success is not None:
            # No process runs this task: the manager's report decides at once.
            decision = decide_exit(
                task.progress, task.success, task.failed_count, self.settings.retry_limit
            )
            task = await self._finish(conn, job, task, decision.status, now=now, caller=caller)
        return task

    async def _request_status(
        self,
        conn: AsyncConnection,
        caller: Caller,
        job: JobRow,
        task: TaskRow,
        new: TaskStatus,
        now: dt.datetime,
    ) -> TaskRow:
        current = task.status
        check_task_move(current, new)
        if new not in _REQUESTABLE:
            raise FailedPrecondition(
                f"task status {new} follows from the task's process and cannot be set directly"
            )
        changes = task_on_enter(new, now=now, reset_attempts=new is T.QUEUED)
        task = await lifecycle.write_task(conn, job, task, changes, now=now, caller=caller)
        await lifecycle.settle(conn, self.settings, job.id, now=now)
        return task

    async def _finish(
        self,
        conn: AsyncConnection,
        job: JobRow,
        task: TaskRow,
        status: TaskStatus,
        *,
        now: dt.datetime,
        caller: Caller,
    ) -> TaskRow:
        return await attempts.finish_task(
            conn, self.settings, job, task, status, now=now, caller=caller
        )

    async def delete(self, caller: Caller, uuid: str) -> TaskRow:
        check_uuid(uuid, TASK_INFIX, "uuid")

        async def run(conn: AsyncConnection) -> TaskRow:
            now = utcnow()
            job, task = await locks.lock_task(conn, uuid)
            check_readable(caller, task)
            if task.status == T.ACTIVE:
                raise FailedPrecondition(f"task {uuid} is active: cancel it before deleting it")
            await lifecycle.delete_descendants(conn, job, uuid, now=now)
            await task_store.delete_task(conn, task.id)
            await feed.append(
                conn, job.uuid, feed.TASK_DELETED, {"uuid": uuid}, task_uuid=uuid, now=now
            )
            await task_writes.recount(conn, job.id)
            await lifecycle.settle(conn, self.settings, job.id, now=now)
            return task

        return await self.db.transact(run)

    # -- the end of a task's process ------------------------------------------------------

    async def report_exit(
        self,
        caller: Caller,
        uuid: str,
        *,
        lease_id: str = "",
        exit_code: int | None = None,
        signal: int | None = None,
        log: str = "",
        handed_back: bool = False,
    ) -> TaskRow:
        """The task's process ended: decide by the seeds' completion rule."""
        check_uuid(uuid, TASK_INFIX, "uuid")

        async def run(conn: AsyncConnection) -> TaskRow:
            job, task = await locks.lock_task(conn, uuid)
            if (
                lease_id
                and task.lease_id == lease_id
                and not leases.live(task.lease_expires_at, utcnow())
            ):
                # The reaper ends an expired lease's attempt: its exit no longer counts.
                raise FailedPrecondition(f"lease {lease_id} of task {uuid} expired")
            return await attempts.finish_attempt(
                conn,
                self.settings,
                caller,
                job,
                task,
                lease_id=lease_id,
                exit_code=exit_code,
                signal=signal,
                log=log,
                handed_back=handed_back,
            )

        return await self.db.transact(run)


@dataclass
class Claim:
    """A task handed to a worker: the task, its job, the lease and the task's token."""

    task: TaskRow
    job: JobRow
    token: str
    lease_id: str
    lease_expires_at: dt.datetime
