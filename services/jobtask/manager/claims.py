"""Handing tasks to workers: claims, leases and their renewal, and the reaper."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field

from jobtask.domain.errors import FailedPrecondition, InvalidArgument
from jobtask.domain.statuses import TaskStatus
from jobtask.manager import lifecycle
from jobtask.manager.context import Caller, Settings, utcnow
from jobtask.manager.tasks import Claim, TaskManager
from jobtask.store.claims import runnable_tasks
from jobtask.store.database import Database
from jobtask.store.records import Record, job_record, task_record
from jobtask.store.schema import job_tasks, jobs, task_attempts, workers
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

MAX_CLAIM = 100


@dataclass(frozen=True)
class WorkerSpec:
    worker_id: str
    node_name: str
    ram_kib: int = 0
    cores: int = 0
    free_slots: int = 1
    tags: tuple[str, ...] = field(default_factory=tuple)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class ClaimManager:
    def __init__(self, db: Database, settings: Settings, tasks: TaskManager) -> None:
        self.db = db
        self.settings = settings
        self.tasks = tasks

    async def claim(self, caller: Caller, worker: WorkerSpec, max_tasks: int = 1) -> list[Claim]:
        """Claims up to max_tasks runnable tasks for the worker, each with a lease."""
        if not worker.worker_id:
            raise InvalidArgument("worker.worker_id", "is required")
        if not worker.node_name:
            raise InvalidArgument("worker.node_name", "is required")
        want = max(1, min(max_tasks or 1, worker.free_slots or 1, MAX_CLAIM))

        async def run(conn: AsyncConnection) -> list[Claim]:
            now = utcnow()
            await self._seen(conn, worker, now)
            others = await self._other_live_workers(conn, worker, now)
            rows = list(
                await conn.execute(runnable_tasks(worker.worker_id if others else None, want))
            )
            claims = []
            for row in rows:
                job = await lifecycle.lock_job(conn, job_id=row.job_id)
                claims.append(await self._start(conn, caller, job, task_record(row), worker, now))
            for job_id in {c.job["id"] for c in claims}:
                settled = await lifecycle.settle(conn, self.settings, job_id, now=now)
                for c in claims:
                    if c.job["id"] == job_id:
                        c.job = settled
            return claims

        return await self.db.transact(run)

    async def _seen(self, conn: AsyncConnection, worker: WorkerSpec, now: dt.datetime) -> None:
        values = {
            "node_name": worker.node_name,
            "ram_kib": worker.ram_kib,
            "cores": worker.cores,
            "last_seen_at": now,
        }
        result = await conn.execute(
            update(workers).where(workers.c.worker_id == worker.worker_id).values(**values)
        )
        if result.rowcount == 0:
            await conn.execute(insert(workers).values(worker_id=worker.worker_id, **values))

    async def _other_live_workers(
        self, conn: AsyncConnection, worker: WorkerSpec, now: dt.datetime
    ) -> int:
        """Workers seen within two lease lifetimes, other than this one: a task failed by
        this worker goes to them while any exists (Flamenco's failure memory)."""
        horizon = now - 2 * self.settings.lease_ttl
        value = (
            await conn.execute(
                select(func.count())
                .select_from(workers)
                .where(workers.c.worker_id != worker.worker_id, workers.c.last_seen_at >= horizon)
            )
        ).scalar()
        return int(value or 0)

    async def _start(
        self,
        conn: AsyncConnection,
        caller: Caller,
        job: Record,
        task: Record,
        worker: WorkerSpec,
        now: dt.datetime,
    ) -> Claim:
        token = secrets.token_urlsafe(32)
        lease_id = secrets.token_hex(16)
        attempt = task["attempt"] + 1
        task = await lifecycle.write_task(
            conn,
            job,
            task,
            {
                "status": TaskStatus.ACTIVE.value,
                "attempt": attempt,
                "worker_id": worker.worker_id,
                "node_name": worker.node_name,
                "lease_id": lease_id,
                "lease_expires_at": now + self.settings.lease_ttl,
                "token_digest": token_digest(token),
                "started_at": now,
                "finished_at": None,
                "success": None,
                "progress": 0.0,
            },
            now=now,
            caller=caller,
        )
        await conn.execute(
            insert(task_attempts).values(
                task_id=task["id"],
                attempt=attempt,
                lease_id=lease_id,
                worker_id=worker.worker_id,
                node_name=worker.node_name,
                started_at=now,
            )
        )
        return Claim(task, job, token)

    async def renew(self, task_uuid: str, lease_id: str) -> tuple[Record, dt.datetime]:
        """Extends a lease; FailedPrecondition if it is no longer the task's lease."""

        async def run(conn: AsyncConnection) -> tuple[Record, dt.datetime]:
            now = utcnow()
            expires = now + self.settings.lease_ttl
            result = await conn.execute(
                update(job_tasks)
                .where(job_tasks.c.uuid == task_uuid, job_tasks.c.lease_id == lease_id)
                .values(lease_expires_at=expires)
                .returning(*job_tasks.c)
            )
            row = result.first()
            if row is None:
                raise FailedPrecondition(f"lease {lease_id} of task {task_uuid} was lost")
            return task_record(row), expires

        return await self.db.transact(run)

    async def reap_expired(self) -> int:
        """Ends the attempts whose lease expired without a heartbeat: the seeds' temporary
        failure. Returns how many were reaped."""
        system = self.settings.system_caller()

        async def run(conn: AsyncConnection) -> int:
            now = utcnow()
            rows = list(
                await conn.execute(
                    select(job_tasks.c.uuid, job_tasks.c.job_id)
                    .where(
                        job_tasks.c.lease_expires_at < now,
                        job_tasks.c.lease_id.is_not(None),
                    )
                    .order_by(job_tasks.c.job_id)
                    .limit(100)
                )
            )
            reaped = 0
            for uuid, job_id in rows:
                job = await lifecycle.lock_job(conn, job_id=job_id)
                fresh = (
                    await conn.execute(
                        select(job_tasks).where(job_tasks.c.uuid == uuid).with_for_update()
                    )
                ).first()
                if fresh is None or fresh.lease_expires_at is None:
                    continue
                task = task_record(fresh)
                if task["lease_expires_at"] >= now:
                    continue
                if task["status"] != TaskStatus.ACTIVE:
                    await conn.execute(
                        update(job_tasks)
                        .where(job_tasks.c.id == task["id"])
                        .values(lease_id=None, lease_expires_at=None, token_digest=None)
                    )
                    continue
                await self.tasks.finish_attempt(
                    conn,
                    system,
                    job,
                    task,
                    lease_id=task["lease_id"],
                    exit_code=None,
                    signal=None,
                    log="",
                    outcome_reason="the lease expired without a heartbeat",
                )
                reaped += 1
            return reaped

        return await self.db.transact(run)

    async def job_of(self, conn: AsyncConnection, job_id: int) -> Record:
        return job_record((await conn.execute(select(jobs).where(jobs.c.id == job_id))).one())
