"""The peers: Huey on SQLite, procrastinate and PgQueuer on PostgreSQL, draining no-op tasks.

    python -m bench.peers huey SQLITE_FILE COUNT        # one consumer process, one worker
    python -m bench.peers procrastinate DSN COUNT       # one worker, concurrency 1
    python -m bench.peers pgqueuer DSN COUNT BATCH      # one QueueManager, mode=drain

Each drains COUNT tasks that the parent enqueued beforehand (`enqueue_huey`,
`enqueue_procrastinate`, `enqueue_pgqueuer`) and prints {"seconds": s}, timed from the
consumer's start to the last task's end, start-up of the Python process excluded, and
{"cpu": c}, the CPU seconds the consumer process used meanwhile (bench.ceiling).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
import time
from typing import Any

from bench.harness import announce, own_cpu_seconds

HUEY_FILE_ENV = "JOBTASK_BENCH_HUEY_FILE"
# procrastinate worker concurrency (its default is 1).
CONCURRENCY = int(os.environ.get("JOBTASK_BENCH_PROCRASTINATE_CONCURRENCY", "1"))


# -- Huey -------------------------------------------------------------------------------

_done = 0
_lock = threading.Lock()


def _huey(filename: str) -> Any:
    from huey import SqliteHuey

    return SqliteHuey("bench", filename=filename, results=False)


def _noop_task(huey: Any) -> Any:
    @huey.task(name="noop")
    def noop() -> None:
        global _done
        with _lock:
            _done += 1

    return noop


def _done_count() -> int:
    return _done


def prepare_huey(filename: str) -> Any:
    """Huey's set-up, outside the timed enqueue (as jobtask's server has started and
    migrated its store before its submission is timed): the import, the instance and its
    tables. Returns the no-op task for enqueue_huey."""
    return _noop_task(_huey(filename))


def enqueue_huey(noop: Any, count: int) -> None:
    for _ in range(count):
        noop()


def drain_huey(filename: str, count: int) -> float:
    huey = _huey(filename)
    _noop_task(huey)
    # The consumer polls an empty queue with back-off; start it eager and keep it so.
    consumer = huey.create_consumer(
        workers=1,
        worker_type="thread",
        initial_delay=0.001,
        backoff=1.0,
        max_delay=0.001,
        periodic=False,
        check_worker_health=False,
    )
    start = time.perf_counter()
    consumer.start()
    while _done_count() < count:
        time.sleep(0.002)
    seconds = time.perf_counter() - start
    consumer.stop(graceful=True)
    return seconds


# -- procrastinate ------------------------------------------------------------------------


def _procrastinate(dsn: str) -> Any:
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    return app


async def prepare_procrastinate(dsn: str) -> None:
    """procrastinate's set-up, outside the timed enqueue: the import and its schema."""
    app = _procrastinate(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def enqueue_procrastinate(dsn: str, count: int) -> None:
    """Defers `count` jobs one by one, then ANALYZEs (its claim query's plan depends on
    table statistics)."""
    app = _procrastinate(dsn)
    async with app.open_async():
        noop = app.tasks["noop"]
        for _ in range(count):
            await noop.defer_async()
        await app.connector.execute_query_async("ANALYZE")


async def drain_procrastinate(dsn: str, count: int) -> float:
    app = _procrastinate(dsn)
    async with app.open_async():
        start = time.perf_counter()
        await app.run_worker_async(
            wait=False, concurrency=CONCURRENCY, install_signal_handlers=False
        )
        seconds = time.perf_counter() - start
        left = await app.connector.execute_query_one_async(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE status <> 'succeeded'"
        )
        if left["n"]:
            raise RuntimeError(f"{left['n']} procrastinate jobs did not succeed")
    return seconds


# -- PgQueuer -----------------------------------------------------------------------------

# Jobs per enqueue call (PgQueuer's list form: one INSERT for the whole batch).
PGQUEUER_ENQUEUE_BATCH = 1000


async def prepare_pgqueuer(dsn: str) -> tuple[Any, Any]:
    """PgQueuer's set-up, outside the timed enqueue: the import, a connection and its own
    schema (`Queries.install`, what `pgq install` runs). Returns the connection (the caller
    closes it) and the Queries for enqueue_pgqueuer."""
    import asyncpg  # type: ignore[import-untyped]  # no stubs published
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
    except BaseException:
        await conn.close()
        raise
    return conn, queries


async def enqueue_pgqueuer(queries: Any, count: int) -> None:
    """Enqueues `count` no-op jobs, PGQUEUER_ENQUEUE_BATCH per call."""
    left = count
    while left:
        n = min(left, PGQUEUER_ENQUEUE_BATCH)
        await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        left -= n


async def drain_pgqueuer(dsn: str, count: int, batch_size: int) -> float:
    """One QueueManager on one asyncpg connection runs the queue until it is empty
    (`mode=drain`, dequeuing `batch_size` jobs at a time)."""
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.models import Job
    from pgqueuer.types import QueueExecutionMode

    done = 0
    conn = await asyncpg.connect(dsn)
    try:
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            nonlocal done
            done += 1

        start = time.perf_counter()
        await qm.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
        seconds = time.perf_counter() - start
        left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
    finally:
        await conn.close()
    if done != count or left:
        raise RuntimeError(f"PgQueuer ran {done} of {count} jobs; {left} left in its queue")
    return seconds


def main() -> None:
    # Run as __main__, this file's tasks would be named after __main__, not bench.peers.
    import bench.peers as peers

    kind, where, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # Imported before the CPU mark: the drain's CPU excludes loading the library.
    importlib.import_module(kind)
    cpu = own_cpu_seconds()
    if kind == "huey":
        seconds = peers.drain_huey(where, count)
    elif kind == "procrastinate":
        seconds = asyncio.run(peers.drain_procrastinate(where, count))
    elif kind == "pgqueuer":
        seconds = asyncio.run(peers.drain_pgqueuer(where, count, int(sys.argv[4])))
    else:
        raise SystemExit(f"unknown peer {kind!r}")
    announce(seconds=seconds, cpu=own_cpu_seconds() - cpu)
    sys.stdout.flush()
    os._exit(0)  # consumer threads must not hold the process open


if __name__ == "__main__":
    main()
