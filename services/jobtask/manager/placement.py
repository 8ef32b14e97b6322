"""Where a task may run: resource limits and failure memory, for one claim transaction.

A Placement reads what the limits count (the job's active tasks per node, the memory the
node's active tasks reserve, the live workers) once per claim, under the job's row lock and
the node's claim lock, and keeps the counts current as the claim starts tasks.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from jobtask.domain.limits import Limits, Refusal, capable_nodes, refuse_counts, refuse_ram
from jobtask.manager.context import WorkerSpec
from jobtask.store import claims as queries
from jobtask.store.rows import JobRow
from sqlalchemy.ext.asyncio import AsyncConnection


class Placement:
    def __init__(
        self,
        conn: AsyncConnection,
        worker: WorkerSpec,
        *,
        now: dt.datetime,
        live: dt.timedelta,
        before_read: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.conn = conn
        # Runs before each read of active tasks: the claim writes its starts set-based, and
        # a count must see those held so far.
        self.before_read = before_read
        self.worker = worker
        self.horizon = now - live
        self._live: list[tuple[str, str, int]] | None = None
        self._job_nodes: dict[int, Counter[str]] = {}
        self._ram_in_use: int | None = None

    async def live_workers(self) -> list[tuple[str, str, int]]:
        """(worker_id, node_name, ram_kib) of live workers, this one included."""
        if self._live is None:
            self._live = await queries.live_workers(self.conn, self.horizon)
        return self._live

    async def ram_in_use(self) -> int:
        if self._ram_in_use is None:
            if self.before_read is not None:
                await self.before_read()
            reserved = await queries.node_reservations(self.conn, self.worker.node_name)
            self._ram_in_use = sum(Limits.of(j, t).task_ram for j, t in reserved)
        return self._ram_in_use

    async def job_nodes(self, job_id: int) -> Counter[str]:
        if job_id not in self._job_nodes:
            if self.before_read is not None:
                await self.before_read()
            self._job_nodes[job_id] = await queries.job_nodes(self.conn, job_id)
        return self._job_nodes[job_id]

    async def refusal(self, job_id: int, limits: Limits) -> Refusal | None:
        """Why this worker may not start the task now, or None."""
        if limits.min_ram_per_node is not None or limits.min_ram_per_task is not None:
            used = await self.ram_in_use() if limits.min_ram_per_task is not None else 0
            refused = refuse_ram(limits, self.worker.ram_kib, used)
            if refused is not None:
                return refused
        if limits.min_nodes is None and not limits.needs_job_counts:
            return None
        nodes = await self.job_nodes(job_id) if limits.needs_job_counts else Counter[str]()
        live = 0
        if limits.min_nodes is not None:
            live = capable_nodes(limits, ((n, ram) for _, n, ram in await self.live_workers()))
        return refuse_counts(limits, self.worker.node_name, nodes, live)

    async def others_can_run(self, task_id: int, limits: Limits) -> bool:
        """Flamenco's failure memory: a task this worker failed goes elsewhere while another
        live worker exists that has not failed it and has the memory the task needs."""
        failed = await queries.failed_workers(self.conn, task_id)
        return any(
            worker_id != self.worker.worker_id and worker_id not in failed and limits.capable(ram)
            for worker_id, _, ram in await self.live_workers()
        )

    async def others_can_run_job(self, blocked: Collection[str], limits: Limits) -> bool:
        """Flamenco's job blocklist: a job that blocklisted this worker goes elsewhere while
        another live worker exists that it did not blocklist and that has the memory."""
        return any(
            worker_id != self.worker.worker_id and worker_id not in blocked and limits.capable(ram)
            for worker_id, _, ram in await self.live_workers()
        )

    def started(self, job_id: int, limits: Limits) -> None:
        """Counts a task this claim just started."""
        if job_id in self._job_nodes:
            self._job_nodes[job_id][self.worker.node_name] += 1
        if self._ram_in_use is not None:
            self._ram_in_use += limits.task_ram


def limits_of(job: JobRow, task: Any) -> Limits:
    """The effective limits of a candidate (a row of runnable_tasks) of the job."""
    return Limits.of(job.runtime_constraints, task.runtime_constraints)
