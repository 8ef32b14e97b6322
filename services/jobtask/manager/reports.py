"""What a worker reports over RunTask, applied one coalesced batch per transaction.

Each batch is applied under the job's and the task's row locks (so the job's events stay in
commit order for watchers), only while the worker's lease is the task's current one, and
renews that lease. The exit, if the batch holds it, ends the attempt in the same transaction:
whatever the worker is told after a commit is durable.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from jobtask.domain.errors import NotFound
from jobtask.domain.reports import Batch, Instruction, Verdict, log_chunks, log_tail, verdict
from jobtask.domain.statuses import JobStatus, TaskStatus
from jobtask.domain.uuids import TASK_INFIX, check_uuid
from jobtask.manager import attempts, lifecycle
from jobtask.manager.attempts import check_readable
from jobtask.manager.context import Caller, Settings, utcnow
from jobtask.store import claims as queries
from jobtask.store import feed
from jobtask.store.database import Database
from jobtask.store.records import Record
from jobtask.store.schema import job_tasks, jobs
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

T = TaskStatus


@dataclass(frozen=True)
class Outcome:
    """Where a lease stands after a batch (or a check)."""

    verdict: Verdict
    lease_expires_at: dt.datetime | None = None
    # Set when the attempt ended: the task as decided.
    finished: Record | None = None


class ReportManager:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def check(self, caller: Caller, task_uuid: str, lease_id: str) -> Outcome:
        """The verdict for a lease, read without writing (first message, cancel watch)."""
        check_uuid(task_uuid, TASK_INFIX, "task_uuid")
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        job_tasks.c.owner_uuid,
                        job_tasks.c.status,
                        job_tasks.c.lease_id,
                        job_tasks.c.lease_expires_at,
                        jobs.c.status.label("job_status"),
                    )
                    .join(jobs, jobs.c.id == job_tasks.c.job_id)
                    .where(job_tasks.c.uuid == task_uuid)
                )
            ).first()
        if row is None:
            raise NotFound(f"task {task_uuid} not found")
        check_readable(caller, {"uuid": task_uuid, "owner_uuid": row.owner_uuid})
        held = row.lease_id == lease_id
        return Outcome(
            verdict(T(row.status), JobStatus(row.job_status), held),
            row.lease_expires_at if held else None,
        )

    async def apply(
        self, caller: Caller, task_uuid: str, lease_id: str, batch: Batch, *, worker_alive: bool
    ) -> Outcome:
        """Applies a batch, renews the lease and, on an exit, ends the attempt.
        `worker_alive`: also record that the task's worker is live."""
        if not batch.changes and not batch.log and batch.exit is None:
            return await self._heartbeat(task_uuid, lease_id, worker_alive=worker_alive)

        async def run(conn: AsyncConnection) -> Outcome:
            now = utcnow()
            try:
                job, task = await lifecycle.lock_task(conn, task_uuid)
            except NotFound:
                return Outcome(verdict(None, None, False))
            if task["lease_id"] != lease_id:
                return Outcome(verdict(T(task["status"]), JobStatus(job["status"]), False))
            check_readable(caller, task)
            task = await self._write(conn, caller, job, task, batch, now)
            if worker_alive and task["worker_id"]:
                await queries.worker_alive(conn, task["worker_id"], now)
            if batch.exit is not None:
                decided = await attempts.finish_attempt(
                    conn,
                    self.settings,
                    caller,
                    job,
                    task,
                    lease_id=lease_id,
                    exit_code=batch.exit.exit_code,
                    signal=batch.exit.signal,
                    log=task.get("log") or "",
                    handed_back=batch.exit.handed_back,
                )
                ended = Verdict(
                    Instruction.STOP, f"the attempt ended: the task is {decided['status']}"
                )
                return Outcome(ended, task["lease_expires_at"], finished=decided)
            return Outcome(
                verdict(T(task["status"]), JobStatus(job["status"]), True),
                task["lease_expires_at"],
            )

        return await self.db.transact(run)

    async def _write(
        self,
        conn: AsyncConnection,
        caller: Caller,
        job: Record,
        task: Record,
        batch: Batch,
        now: dt.datetime,
    ) -> Record:
        changes: dict[str, Any] = {"lease_expires_at": now + self.settings.lease_ttl}
        # A canceled task's process is being stopped: its last log lines still count, its
        # progress and results no longer do.
        reported = batch.changes if task["status"] == T.ACTIVE else {}
        changes.update(reported)
        if batch.log:
            changes["log"] = log_tail(task.get("log"), batch.log)
            await feed.append_many(
                conn,
                [
                    {
                        "created_at": now,
                        "job_uuid": job["uuid"],
                        "task_uuid": task["uuid"],
                        "type": feed.TASK_LOG,
                        "payload": {"log": chunk},
                    }
                    for chunk in log_chunks(batch.log)
                ],
            )
        if {"output", "success"} & reported.keys():
            event: str | None = feed.TASK_CHANGED
        elif "progress" in reported:
            event = feed.TASK_PROGRESS
        else:
            event = None
        return await lifecycle.write_task(
            conn, job, task, changes, now=now, caller=caller, event=event
        )

    async def _heartbeat(self, task_uuid: str, lease_id: str, *, worker_alive: bool) -> Outcome:
        """Renews the lease alone: one UPDATE, no event, no version bump."""

        async def run(conn: AsyncConnection) -> Outcome:
            now = utcnow()
            expires = now + self.settings.lease_ttl
            row = (
                await conn.execute(
                    update(job_tasks)
                    .where(job_tasks.c.uuid == task_uuid, job_tasks.c.lease_id == lease_id)
                    .values(lease_expires_at=expires)
                    .returning(job_tasks.c.status, job_tasks.c.job_id, job_tasks.c.worker_id)
                )
            ).first()
            if row is None:
                return Outcome(verdict(None, None, False))
            job_status = (
                await conn.execute(select(jobs.c.status).where(jobs.c.id == row.job_id))
            ).scalar_one()
            if worker_alive and row.worker_id:
                await queries.worker_alive(conn, row.worker_id, now)
            return Outcome(verdict(T(row.status), JobStatus(job_status), True), expires)

        return await self.db.transact(run)

    async def abandon(self, caller: Caller, task_uuid: str, lease_id: str, reason: str) -> None:
        """The worker's stream ended without an exit: the seeds' temporary failure, if the
        lease is still this worker's."""

        async def run(conn: AsyncConnection) -> None:
            try:
                job, task = await lifecycle.lock_task(conn, task_uuid)
            except NotFound:
                return
            if task["lease_id"] != lease_id:
                return
            await attempts.finish_attempt(
                conn,
                self.settings,
                caller,
                job,
                task,
                lease_id=lease_id,
                exit_code=None,
                signal=None,
                log=task.get("log") or "",
                outcome_reason=reason,
            )

        await self.db.transact(run)
