"""Replicas starting together on a fresh PostgreSQL database: `jobtask db upgrade` processes
and servers (which migrate as they start) all at once. The advisory lock in
jobtask.store.migrate lets one migrate while the others wait, then find nothing to do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest
from jobtask.sdk import AsyncClient
from jobtask.store import migrate

from tests.conftest import start_jobtask
from tests.polling import DEADLINE, eventually
from tests.scale.checks import asyncpg_dsn, fetch
from tests.scale.conftest import ROOT_TOKEN, Topology

pytestmark = pytest.mark.postgres

UPGRADES = 4


async def upgrade(topology: Topology) -> tuple[int, str]:
    proc = await start_jobtask(
        "db",
        "upgrade",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=topology.env(),
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def held_at_the_gate(url: str, processes: int, closed: asyncio.Event) -> None:
    """Holds every migrating process at its first DDL statement, then lets them all go at
    once: the test's own transaction creates `alembic_version` (then sets `closed`: the
    processes start after that, or the first could create the table before the gate) and
    waits, uncommitted, until `processes` sessions are blocked (on that table, or on the
    migration lock), then rolls back. Without the lock they would all run the migrations
    together."""
    gate = await asyncpg.connect(asyncpg_dsn(url))
    # A second session: pg_stat_activity stays as first read within a transaction.
    watch = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with gate.transaction():
            await gate.execute("CREATE TABLE alembic_version (version_num varchar(32))")
            closed.set()
            await eventually(lambda: _waiting(watch, processes), within=60, interval=0.1)
            raise _Release
    except _Release:
        pass
    finally:
        await gate.close()
        await watch.close()


class _Release(Exception):
    """Rolls the gate's transaction back."""


async def _waiting(watch: asyncpg.Connection, processes: int) -> bool:
    n = await watch.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )
    return int(n) >= processes


async def test_upgrades_and_servers_started_at_once_migrate_once(
    empty_postgres_url: str, tmp_path: Path
) -> None:
    topology = Topology(empty_postgres_url, tmp_path)
    closed = asyncio.Event()
    gate = asyncio.create_task(held_at_the_gate(empty_postgres_url, UPGRADES + 4, closed))
    try:
        # Nothing starts before the gate is closed.
        waiting = asyncio.create_task(closed.wait())
        await asyncio.wait({gate, waiting}, timeout=DEADLINE, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if gate.done():
            gate.result()  # it failed before closing
        assert closed.is_set(), "the gate did not close"
        results, tasks, jobs, _ = await asyncio.gather(
            asyncio.gather(*(upgrade(topology) for _ in range(UPGRADES))),
            topology.serve_many("tasks", 2),
            topology.serve_many("jobs", 2),
            gate,
        )
        head = migrate.head_revision()
        for code, out in results:
            assert code == 0, out
            assert out.strip().endswith(f"schema at {head}"), out
        versions = await fetch(empty_postgres_url, "SELECT version_num FROM alembic_version")
        assert [r["version_num"] for r in versions] == [head]
        # Every replica serves on the one schema: a job submitted through one is read
        # through the other.
        async with AsyncClient.connect(jobs[0].addr, tasks[0].addr, ROOT_TOKEN) as first:
            job = await first.submit("scale_task", {"children": 0})
        async with AsyncClient.connect(jobs[1].addr, tasks[1].addr, ROOT_TOKEN) as second:
            assert (await second.get(job.uuid)).uuid == job.uuid
            assert len(await second.tasks(job.uuid)) == 1
        for part in [*tasks, *jobs]:
            assert "Traceback" not in part.log(), part.log()
    finally:
        await topology.stop_all()
