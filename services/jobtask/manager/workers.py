"""The worker registry: who is working, on what, and whether it is still there.

A worker's state is derived when it is read: stopped if it said goodbye since its last
claim, lost if it has not been seen within the live horizon (twice the lease ttl: by then
any lease it held has expired, and the reaper has handed its tasks back), live otherwise.
Seen means its own messages: a claim, a report, a heartbeat; a session's claims made for a
worker that promised a heartbeat_interval record its last message, not the claim, so a
stopped or hung one turns lost though its connection stays open.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from jobtask.domain.access import may_read
from jobtask.domain.errors import InvalidArgument, NotFound, PermissionDenied
from jobtask.manager.context import Caller, Settings, utcnow
from jobtask.store import workers as queries
from jobtask.store.database import Database
from jobtask.store.workers import WorkerRow
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["WorkerRegistry", "WorkerState", "WorkerView", "prune_workers"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Enough for every worker of a large farm in one watch snapshot.
WATCH_LIMIT = 10_000
# Workers pruned by one transaction at most: a backlog of thousands (a first run after an
# upgrade) goes in short transactions, none holding the table's write lock (SQLite) for long.
PRUNE_BATCH = 500


class WorkerState(enum.Enum):
    LIVE = "live"
    LOST = "lost"
    STOPPED = "stopped"


@dataclass(frozen=True)
class WorkerView:
    """A worker as one caller sees it."""

    row: WorkerRow
    state: WorkerState
    free_slots: int
    task_uuids: tuple[str, ...]
    tasks_finished: int
    tasks_failed: int


def state_of(row: WorkerRow, now: dt.datetime, horizon: dt.timedelta) -> WorkerState:
    if row.stopped_at is not None:
        return WorkerState.STOPPED
    return WorkerState.LIVE if row.last_seen_at >= now - horizon else WorkerState.LOST


async def prune_workers(
    db: Database, settings: Settings, now: dt.datetime, batch: int = PRUNE_BATCH
) -> int:
    """Forgets the workers stopped or lost and not seen within settings.worker_retention,
    `batch` per transaction; how many. A lost worker is one not seen within the live
    horizon, so a retention shorter than that prunes no live worker."""
    stopped_before = now - settings.worker_retention
    lost_before = now - max(settings.worker_retention, settings.live_horizon)

    async def one_batch(conn: AsyncConnection) -> int:
        return await queries.prune(
            conn, stopped_before=stopped_before, lost_before=lost_before, limit=batch
        )

    pruned = 0
    while True:
        done = await db.transact(one_batch)
        pruned += done
        if done < batch:
            return pruned


class WorkerRegistry:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        # The most workers all() reads (a watch's look at the registry).
        self.watch_limit = WATCH_LIMIT

    async def page(
        self, caller: Caller, limit: int | None = None, offset: int | None = None
    ) -> tuple[list[WorkerView], int]:
        """A page of workers, newest sign of life first, and how many there are."""
        if limit is not None and limit < 0:
            raise InvalidArgument("limit", "must not be negative")
        if offset is not None and offset < 0:
            raise InvalidArgument("offset", "must not be negative")
        size = DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)
        async with self.db.snapshot() as conn:
            rows = await queries.list_workers(conn, size, offset or 0)
            total = await queries.count_workers(conn)
            return await self._views(conn, caller, rows), total

    async def all(self, caller: Caller) -> list[WorkerView]:
        async with self.db.snapshot() as conn:
            rows = await queries.list_workers(conn, self.watch_limit, 0)
            return await self._views(conn, caller, rows)

    async def get(self, caller: Caller, worker_id: str) -> WorkerView:
        if not worker_id:
            raise InvalidArgument("worker_id", "is required")
        async with self.db.snapshot() as conn:
            row = await queries.get_worker(conn, worker_id)
            if row is None:
                raise NotFound(f"worker {worker_id} not found")
            return (await self._views(conn, caller, [row]))[0]

    async def stopped(self, caller: Caller, worker_id: str) -> WorkerView:
        """A worker's goodbye on a clean shutdown."""
        if not (caller.is_admin or caller.is_system):
            raise PermissionDenied("only workers (the system user's tokens) and admins may do this")
        if not worker_id:
            raise InvalidArgument("worker_id", "is required")

        async def run(conn: AsyncConnection) -> WorkerView:
            if not await queries.mark_stopped(conn, worker_id, utcnow()):
                raise NotFound(f"worker {worker_id} not found")
            row = await queries.get_worker(conn, worker_id)
            assert row is not None
            return (await self._views(conn, caller, [row]))[0]

        return await self.db.transact(run)

    async def _views(
        self, conn: AsyncConnection, caller: Caller, rows: list[WorkerRow]
    ) -> list[WorkerView]:
        ids = [r.worker_id for r in rows]
        running: dict[str, list[queries.RunningTask]] = {}
        for task in await queries.running_tasks(conn, ids):
            running.setdefault(task.worker_id, []).append(task)
        counts = await queries.attempt_counts(conn, ids)
        now = utcnow()
        horizon = self.settings.live_horizon
        views = []
        for row in rows:
            tasks = running.get(row.worker_id, [])
            finished, failed = counts.get(row.worker_id, (0, 0))
            views.append(
                WorkerView(
                    row=row,
                    state=state_of(row, now, horizon),
                    free_slots=max(0, row.slots - len(tasks)),
                    # Other users' task uuids are theirs to know.
                    task_uuids=tuple(
                        t.task_uuid
                        for t in tasks
                        if caller.is_system or may_read(caller, t.owner_uuid)
                    ),
                    tasks_finished=finished,
                    tasks_failed=failed,
                )
            )
        return views
