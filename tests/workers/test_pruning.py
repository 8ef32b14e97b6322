"""The worker registry forgets stopped and lost workers not seen within the retention: the
TaskService's upkeep deletes them, in bounded batches, skipping rows a claim holds
(PostgreSQL), while their attempts keep naming them, and a workers watch is told (REMOVED).
Real stores, real servers; timestamps moved back with SQL, as days passing would."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest
from jobtask.manager.context import Caller, Settings, utcnow
from jobtask.manager.workers import WorkerRegistry, prune_workers
from jobtask.sdk import AsyncClient
from jobtask.server.changes import ChangeSignal
from jobtask.server.workers import WorkerWatch
from jobtask.store import migrate
from jobtask.store import workers as queries
from jobtask.store.database import Database
from jobtask.store.schema import workers
from jobtask.v1 import task_service_pb2, worker_pb2
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import _asyncpg_dsn, running_cluster
from tests.core.helpers import claim, create_job, job_tasks, succeed
from tests.polling import eventually

RETENTION = 3600.0
LONG_AGO = dt.timedelta(days=8)


async def seen_at(db: Database, ago: dict[str, dt.timedelta]) -> None:
    """Moves workers' last sign of life back, as time passing without them would."""
    now = utcnow()

    async def run(conn: AsyncConnection) -> None:
        for worker_id, delta in ago.items():
            await conn.execute(
                update(workers)
                .where(workers.c.worker_id == worker_id)
                .values(last_seen_at=now - delta)
            )

    await db.transact(run)


async def registered(db: Database) -> set[str]:
    async with db.read() as conn:
        return {str(w) for w in (await conn.execute(select(workers.c.worker_id))).scalars()}


async def test_upkeep_prunes_old_stopped_and_lost_workers_and_keeps_their_attempts(
    database_url: str,
) -> None:
    options = {"lease_ttl": 3.0, "worker_retention": RETENTION, "prune_interval": 0.1}
    async with running_cluster(database_url, **options) as cluster:
        job = await cluster.jobs.CreateJob(create_job(script="prune.py"))
        assignment = await claim(cluster, "old-lost")
        assert assignment is not None
        await succeed(cluster, assignment, output="done")
        for worker_id in ("old-stopped", "recent-stopped", "recent-lost", "live"):
            assert await claim(cluster, worker_id) is None  # (registered all the same)
        for worker_id in ("old-stopped", "recent-stopped"):
            await cluster.tasks.ReportWorkerStopped(
                task_service_pb2.ReportWorkerStoppedRequest(worker_id=worker_id)
            )
        db = cluster.services.core.db
        old, recent = LONG_AGO, dt.timedelta(minutes=30)  # both lost: the horizon is 6 s
        await seen_at(
            db,
            {"old-lost": old, "old-stopped": old, "recent-lost": recent, "recent-stopped": recent},
        )

        kept = {"recent-stopped", "recent-lost", "live"}

        async def pruned() -> bool:
            return await registered(db) == kept

        await eventually(pruned, within=10)
        listed = await cluster.tasks.ListWorkers(task_service_pb2.ListWorkersRequest())
        assert {w.worker_id for w in listed.items} == kept and listed.items_available == 3
        (task,) = await job_tasks(cluster, job.uuid)
        attempts = await cluster.tasks.ListTaskAttempts(
            task_service_pb2.ListTaskAttemptsRequest(uuid=task.uuid)
        )
        assert [(a.worker_id, a.outcome) for a in attempts.items] == [("old-lost", "completed")]


async def test_a_workers_watch_is_told_of_each_pruned_worker(database_url: str) -> None:
    """The SDK's watch_workers: REMOVED, with the worker as it was last sent, once the upkeep
    pruned it, and nothing for the worker kept (30 s leases: none turns lost meanwhile)."""
    options = {"lease_ttl": 30.0, "worker_retention": RETENTION, "prune_interval": 0.1}
    async with running_cluster(database_url, **options) as cluster:
        for worker_id in ("gone", "kept"):
            assert await claim(cluster, worker_id) is None  # (registered all the same)
        await cluster.tasks.ReportWorkerStopped(
            task_service_pb2.ReportWorkerStoppedRequest(worker_id="gone")
        )
        token = cluster.root_token or ""
        async with AsyncClient.connect(cluster.jobs_addr, cluster.tasks_addr, token) as client:
            events = client.watch_workers()
            snapshot = await anext(events)
            assert {w.worker_id for w in snapshot.workers} == {"gone", "kept"}
            await seen_at(cluster.services.core.db, {"gone": LONG_AGO})
            told = await asyncio.wait_for(anext(events), 30)
            while told.type == worker_pb2.WORKER_EVENT_TYPE_HEARTBEAT:
                told = await asyncio.wait_for(anext(events), 30)
            assert told.type == worker_pb2.WORKER_EVENT_TYPE_REMOVED, told
            assert (told.worker.worker_id, told.worker.state) == (
                "gone",
                worker_pb2.WORKER_STATE_STOPPED,
            )
            await events.aclose()
        assert await registered(cluster.services.core.db) == {"kept"}


def _rows(ids: Iterable[str], last_seen: dt.datetime) -> list[dict[str, object]]:
    return [{"worker_id": i, "node_name": "n", "last_seen_at": last_seen} for i in ids]


async def _migrated(url: str) -> Database:
    db = Database(url)
    await migrate.upgrade(db)
    return db


async def test_a_backlog_is_pruned_in_batches_of_at_most_the_batch_size(
    database_url: str,
) -> None:
    db = await _migrated(database_url)
    now = utcnow()
    settings = Settings(worker_retention=dt.timedelta(seconds=RETENTION))
    try:

        async def seed(conn: AsyncConnection) -> None:
            await conn.execute(
                insert(workers), _rows((f"gone-{i}" for i in range(1234)), now - LONG_AGO)
            )
            await conn.execute(insert(workers), _rows(["fresh"], now))

        await db.transact(seed)

        async def one(conn: AsyncConnection) -> int:
            return await queries.prune(
                conn, stopped_before=now, lost_before=now - LONG_AGO / 2, limit=500
            )

        assert await db.transact(one) == 500
        assert await prune_workers(db, settings, now) == 734
        assert await registered(db) == {"fresh"}
        assert await prune_workers(db, settings, now) == 0
    finally:
        await db.dispose()


def test_a_retention_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="worker_retention"):
        Settings(worker_retention=dt.timedelta(0))


@pytest.mark.postgres
async def test_pruning_skips_a_worker_row_a_claim_holds(postgres_url: str) -> None:
    """A claim locks its worker's row (claim_turn): pruning neither waits for it nor takes
    it, and takes it on a later round once it is free."""
    db = await _migrated(postgres_url)
    now = utcnow()
    settings = Settings(worker_retention=dt.timedelta(seconds=RETENTION))
    holder = await asyncpg.connect(
        _asyncpg_dsn(postgres_url, make_url(postgres_url).database or "")
    )
    try:

        async def seed(conn: AsyncConnection) -> None:
            await conn.execute(insert(workers), _rows(["held", "free"], now - LONG_AGO))

        await db.transact(seed)
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT 1 FROM workers WHERE worker_id = 'held' FOR UPDATE")
        assert await asyncio.wait_for(prune_workers(db, settings, now), 10) == 1
        assert await registered(db) == {"held"}
        await held.rollback()
        assert await prune_workers(db, settings, now) == 1
        async with db.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(workers))).scalar() == 0
    finally:
        await holder.close()
        await db.dispose()


async def test_a_watch_of_a_registry_bigger_than_its_read_calls_no_worker_removed(
    database_url: str,
) -> None:
    """A watch reads at most watch_limit workers (newest seen first). On a bigger farm a
    worker that moves out of that window is not gone: the watch says nothing of it, and
    REMOVED only once a read covers the whole registry again."""
    db = await _migrated(database_url)
    now = utcnow()
    try:

        async def seed(conn: AsyncConnection) -> None:
            for i, worker_id in enumerate(("a", "b", "c")):
                await conn.execute(
                    insert(workers), _rows([worker_id], now - dt.timedelta(seconds=i))
                )

        await db.transact(seed)
        registry = WorkerRegistry(db, Settings(lease_ttl=dt.timedelta(hours=1)))
        registry.watch_limit = 2
        watch = WorkerWatch(registry, ChangeSignal(), read_seconds=0.05, heartbeat_seconds=0.2)
        events = watch.stream(Caller(user_uuid="", is_system=True))
        snapshot = await anext(events)
        assert [w.worker_id for w in snapshot.workers] == ["a", "b"]
        # c is seen again: it enters the window, b moves out of it, and is not removed.
        await seen_at(db, {"c": -dt.timedelta(seconds=5)})
        told: list[tuple[int, str]] = []
        while len(told) < 3:
            event = await asyncio.wait_for(anext(events), 30)
            told.append((event.type, event.worker.worker_id))
        assert (worker_pb2.WORKER_EVENT_TYPE_REMOVED, "b") not in told, told

        # The registry shrinks under the limit (a and b pruned): whole again, so the watch
        # tells of a, which it saw, and of b, which it still knew of.
        async def prune(conn: AsyncConnection) -> None:
            await conn.execute(workers.delete().where(workers.c.worker_id.in_(["a", "b"])))

        await db.transact(prune)
        removed: set[str] = set()
        while removed != {"a", "b"}:
            event = await asyncio.wait_for(anext(events), 30)
            if event.type == worker_pb2.WORKER_EVENT_TYPE_REMOVED:
                removed.add(event.worker.worker_id)
        await events.aclose()
    finally:
        await db.dispose()
