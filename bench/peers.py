"""The peers: Huey on SQLite and procrastinate on PostgreSQL, draining no-op tasks.

    python -m bench.peers huey SQLITE_FILE COUNT        # one consumer process, one worker
    python -m bench.peers procrastinate DSN COUNT       # one worker, concurrency 1

Each drains COUNT tasks that the parent enqueued beforehand (`enqueue_huey`,
`enqueue_procrastinate`) and prints {"seconds": s}, timed from the consumer's start to the
last task's end, start-up of the Python process excluded.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import Any

from bench.harness import announce

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


def enqueue_huey(filename: str, count: int) -> None:
    huey = _huey(filename)
    noop = _noop_task(huey)
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


async def enqueue_procrastinate(dsn: str, count: int) -> None:
    """Applies procrastinate's schema, defers `count` jobs one by one, then ANALYZEs (its
    claim query's plan depends on table statistics)."""
    app = _procrastinate(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
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


def main() -> None:
    # Run as __main__, this file's tasks would be named after __main__, not bench.peers.
    import bench.peers as peers

    kind, where, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "huey":
        seconds = peers.drain_huey(where, count)
    elif kind == "procrastinate":
        seconds = asyncio.run(peers.drain_procrastinate(where, count))
    else:
        raise SystemExit(f"unknown peer {kind!r}")
    announce(seconds=seconds)
    sys.stdout.flush()
    os._exit(0)  # consumer threads must not hold the process open


if __name__ == "__main__":
    main()
