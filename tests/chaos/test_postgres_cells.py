"""The chaos cells on PostgreSQL (the chaos cells' own server, tests/chaos/postgres.py):
2 TaskService replicas, 1 JobService, the gateway and 4 workers; jobs of chaos_task that
fan out, report progress and create children; a fault a third of the way through. Each
ends with no task lost, none completed twice, the history clean (tests/chaos/history.py),
and the surviving processes never restarted."""

from __future__ import annotations

import asyncio

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest
from sqlalchemy.engine import make_url

from tests.chaos.cell import HOLD, TASKS, Cell, held, now, timed
from tests.chaos.history import Fault
from tests.chaos.postgres import OwnPostgres

pytestmark = [pytest.mark.postgres, pytest.mark.chaos, pytest.mark.timeout(1200)]


def database(cell: Cell) -> str:
    return str(make_url(cell.url).database)


async def begin(cell: Cell) -> None:
    await cell.start_split()
    await cell.submit()
    await cell.progressed(1 / 3)


def survivors_ran_through(cell: Cell, *restarted: str) -> None:
    """No process but the ones the fault killed was restarted: the first of each kind
    is still the one running."""
    for part in cell.topology.parts:
        if part.name in restarted or "-r" in part.name:
            continue
        assert part.running, f"{part.name} stopped:\n{part.log()}"


async def test_postgres_restart(pg_cell: Cell, own_postgres: OwnPostgres) -> None:
    await begin(pg_cell)

    async def fault() -> None:
        await asyncio.to_thread(own_postgres.stop, "fast")
        await held(HOLD)
        await asyncio.to_thread(own_postgres.start)

    window = await timed(fault)
    await pg_cell.finish(window)
    survivors_ran_through(pg_cell)


async def test_pg_backend_kill(pg_cell: Cell, own_postgres: OwnPostgres) -> None:
    await begin(pg_cell)

    async def fault() -> None:
        for _ in range(6 if HOLD > 5 else 3):
            await own_postgres.terminate_backends(database(pg_cell))
            await held(1.0)

    window = await timed(fault)
    await pg_cell.finish(window)
    survivors_ran_through(pg_cell)


async def test_pool_exhaustion(pg_cell: Cell, own_postgres: OwnPostgres) -> None:
    """Every connection slot of the server taken (the services' sessions killed first, so
    they must come back for new ones) for HOLD seconds."""
    await begin(pg_cell)
    holders: list[asyncpg.Connection] = []

    async def grab() -> None:
        while True:
            try:
                holders.append(await asyncpg.connect(own_postgres.dsn()))
            except (asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError):
                return

    async def fault() -> None:
        await own_postgres.terminate_backends(database(pg_cell))
        await grab()
        assert len(holders) > 10
        end = asyncio.get_running_loop().time() + HOLD
        while asyncio.get_running_loop().time() < end:
            await grab()  # a slot freed meanwhile is taken again
            await asyncio.sleep(0.2)
        for conn in holders:
            await conn.close()

    try:
        window = await timed(fault)
    finally:
        for conn in holders:
            if not conn.is_closed():
                conn.terminate()
    await pg_cell.finish(window)
    survivors_ran_through(pg_cell)


async def test_crash_recovery(pg_cell: Cell) -> None:
    """One TaskService replica SIGKILLed and left dead: its workers move to the other."""
    await begin(pg_cell)
    victim = pg_cell.tasks[0]
    window = await timed(lambda: pg_cell.kill(victim))
    await pg_cell.finish(window)
    survivors_ran_through(pg_cell, victim.name)


async def test_repeated_kills(pg_cell: Cell) -> None:
    """Each TaskService replica, then the JobService (watchers resume), then a worker,
    SIGKILLed in turn; each service restarted on its port, the worker replaced."""
    await pg_cell.start_split()
    await pg_cell.submit()
    await pg_cell.progressed(0.2)
    killed = []
    began = now()
    steps = [0.3, 0.4, 0.5, 0.6]
    for i, victim in enumerate([pg_cell.tasks[0], pg_cell.tasks[1], pg_cell.jobs[0]]):
        killed.append(victim.name)
        await pg_cell.kill(victim)
        await held(1.0)
        await pg_cell.restart(victim)
        await pg_cell.progressed(steps[i])
    worker = pg_cell.workers[-1]
    killed.append(worker.name)
    await pg_cell.kill(worker)
    window = Fault(began, now())
    pg_cell.workers.append(await pg_cell.add_worker("w-new", len(pg_cell.workers)))
    await pg_cell.finish(window)
    survivors_ran_through(pg_cell, *killed)


async def test_idle_in_tx(pg_cell: Cell, own_postgres: OwnPostgres) -> None:
    """A session holds every job row and a batch of queued task rows FOR UPDATE in an open
    transaction for HOLD seconds (a stuck admin session, a hung migration)."""
    await begin(pg_cell)
    conn = await asyncpg.connect(own_postgres.dsn(database(pg_cell)))
    try:

        async def fault() -> None:
            tx = conn.transaction()
            await tx.start()
            await conn.fetch("SELECT id FROM jobs ORDER BY id FOR UPDATE")
            await conn.fetch(
                "SELECT id FROM job_tasks WHERE status = 'queued' ORDER BY id LIMIT 50 FOR UPDATE"
            )
            await held(HOLD * 2)
            await tx.rollback()

        window = await timed(fault)
    finally:
        await conn.close()
    await pg_cell.finish(window)
    survivors_ran_through(pg_cell)


async def test_event_burst(pg_cell: Cell, own_postgres: OwnPostgres) -> None:
    """A burst of task creations through both TaskService replicas at once, on top of a
    storm of NOTIFYs on the services' channel."""
    from jobtask.sdk import AsyncClient
    from jobtask.store.database import NOTIFY_CHANNEL

    from tests.scale.conftest import ROOT_TOKEN

    await begin(pg_cell)
    burst = max(50, TASKS // 4)
    gate = asyncio.Semaphore(32)
    clients = [
        AsyncClient.connect(pg_cell.jobs_addr, addr, ROOT_TOKEN) for addr in pg_cell.tasks_addrs
    ]
    conn = await asyncpg.connect(own_postgres.dsn(database(pg_cell)))

    async def one(n: int) -> None:
        async with gate:
            task = await clients[n % len(clients)].create_task(
                pg_cell.job_uuids[n % len(pg_cell.job_uuids)], sequence=1, parameters={"n": n}
            )
        with pg_cell.runlog.open("a") as log:
            log.write(f"spawn test {task.uuid} 0\n")  # (no task created it: attempt 0)

    async def fault() -> None:
        storm = conn.execute(
            "SELECT pg_notify($1, '') FROM generate_series(1, $2)", NOTIFY_CHANNEL, burst * 20
        )
        await asyncio.gather(storm, *(one(n) for n in range(burst)))

    try:
        window = await timed(fault)
    finally:
        await conn.close()
        for client in clients:
            await client.close()
    await pg_cell.finish(window)
    survivors_ran_through(pg_cell)
