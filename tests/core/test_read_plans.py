"""Reads outside the hot path read the rows they answer with, not the task table.

The store's PostgreSQL sessions plan without sorts (jobtask.store.database.SESSION_SETTINGS).
A read asking for an order no index of its rows gives was then planned as a walk of an index
in that order over every task of every job, filtered: a job's tasks in id order walked the
whole primary key, the reaper's expired leases in job id order walked every task's job
index. bench/plans.py measured them at 2,000 jobs and 200,000 tasks: 38 ms against 8 ms,
and 83 ms against 0.4 ms, growing with the table. Counted by the session's own table
statistics (rows fetched from job_tasks), on the store's only connection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from jobtask.store import attempts, leases, locks, tasks
from jobtask.store.database import Database
from jobtask.store.migrate import upgrade
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.core.raw_rows import connect, insert_job, insert_tasks, task_uuid

pytestmark = pytest.mark.postgres

OTHERS = 3000
MINE = 30


async def _fetched(conn: AsyncConnection, table: str = "job_tasks") -> int:
    """Rows of `table` this session read in this transaction (and maybe the last few: only
    a difference is one read's)."""
    count = await conn.execute(
        text(
            "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0)"
            " FROM pg_stat_xact_user_tables WHERE relname = :table"
        ),
        {"table": table},
    )
    return int(count.scalar() or 0)


Store = tuple[Database, Any]


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[Store]:
    """The store, on one connection (its counts are the session's), and a raw session."""
    db = Database(postgres_url, pool_size=1, max_overflow=0)
    await upgrade(db)
    raw = await connect(postgres_url)
    try:
        yield db, raw
    finally:
        await raw.close()
        await db.dispose()


@pytest.mark.parametrize("analyzed", [False, True])
async def test_a_jobs_tasks_are_read_through_its_index(store: Store, analyzed: bool) -> None:
    db, raw = store
    other = await insert_job(raw, status="active")
    await insert_tasks(raw, other, [task_uuid(n) for n in range(OTHERS)])
    mine = await insert_job(raw, status="active", uuid="zzzzz-8i9sb-000000000000002")
    # Ids after every other job's, statuses mixed, later tasks in lower sequences: the
    # index of (job_id, sequence, status) holds them in another order than their ids.
    uuids = [task_uuid(n) for n in range(OTHERS, OTHERS + MINE)]
    for i in range(0, MINE, 10):
        status = "completed" if i % 20 == 0 else "queued"
        await insert_tasks(raw, mine, uuids[i : i + 10], status=status, sequence=MINE - i)
    if analyzed:
        await raw.execute("ANALYZE")

    async with db.read() as conn:
        before = await _fetched(conn)
        found = await tasks.tasks_of_job(conn, mine)
        read_rows = await _fetched(conn) - before
    assert [t.uuid for t in found] == uuids
    assert read_rows < 3 * MINE, f"reading {MINE} tasks read {read_rows} task rows"


@pytest.mark.parametrize("analyzed", [False, True])
async def test_the_reaper_reads_the_expired_leases_only(store: Store, analyzed: bool) -> None:
    """Among thousands of tasks, a few leased: the reaper's read takes the expired ones
    through the lease index, and answers in job id order (the order it locks jobs in)."""
    db, raw = store
    first = await insert_job(raw, status="active")
    second = await insert_job(raw, status="active", uuid="zzzzz-8i9sb-000000000000002")
    await insert_tasks(raw, first, [task_uuid(n) for n in range(OTHERS)])
    await insert_tasks(raw, second, [task_uuid(n) for n in range(OTHERS, 2 * OTHERS)])
    # (task, seconds its lease expires in): live ones and expired ones in both jobs,
    # the second job's expired first.
    leased = {
        task_uuid(10): 600,
        task_uuid(20): -30,
        task_uuid(OTHERS + 10): -90,
        task_uuid(OTHERS + 20): 600,
        task_uuid(OTHERS + 30): -60,
    }
    now = dt.datetime.now(dt.UTC)
    for uuid, seconds in leased.items():
        await raw.execute(
            """UPDATE job_tasks SET status = 'active', lease_id = $1, worker_id = 'w1',
              lease_expires_at = $2 WHERE uuid = $1""",
            uuid,
            now + dt.timedelta(seconds=seconds),
        )
    if analyzed:
        await raw.execute("ANALYZE")

    async with db.read() as conn:
        before = await _fetched(conn)
        found = await leases.expired(conn, now, 100)
        read_rows = await _fetched(conn) - before
    assert [job for _, job in found] == [first, second, second]
    assert {uuid for uuid, _ in found} == {u for u, s in leased.items() if s < 0}
    assert read_rows < 10, f"reading 3 expired leases read {read_rows} task rows"


@pytest.mark.parametrize("analyzed", [False, True])
async def test_renewing_leases_reads_their_tasks_only(store: Store, analyzed: bool) -> None:
    """A worker session renews its leases in one statement that locks their tasks in id
    order: among thousands of tasks it reads the leased ones, found by uuid."""
    db, raw = store
    job = await insert_job(raw, status="active")
    await insert_tasks(raw, job, [task_uuid(n) for n in range(OTHERS)])
    now = dt.datetime.now(dt.UTC)
    held = {task_uuid(n): f"lease-{n}" for n in (2500, 40, 1200)}
    for uuid, lease in held.items():
        await raw.execute(
            """UPDATE job_tasks SET status = 'active', lease_id = $2, worker_id = 'w1',
              lease_expires_at = $3 WHERE uuid = $1""",
            uuid,
            lease,
            now + dt.timedelta(seconds=600),
        )
    if analyzed:
        await raw.execute("ANALYZE")

    async def renew(conn: AsyncConnection) -> tuple[list[leases.LeaseState], int]:
        before = await _fetched(conn)
        found = await leases.renew(conn, held, now + dt.timedelta(seconds=900), now)
        return found, await _fetched(conn) - before

    found, read_rows = await db.transact(renew)
    assert sorted(state.task_uuid for state in found) == sorted(held)
    assert read_rows < 20, f"renewing 3 leases read {read_rows} task rows"


@pytest.mark.parametrize("analyzed", [False, True])
async def test_a_tasks_or_jobs_attempts_are_read_through_their_indexes(
    store: Store, analyzed: bool
) -> None:
    """Attempt history, oldest first: a task's or a small job's attempts among thousands
    of other attempts are read, not the whole table of attempts."""
    db, raw = store
    other = await insert_job(raw, status="active")
    await insert_tasks(raw, other, [task_uuid(n) for n in range(OTHERS)], status="completed")
    mine = await insert_job(raw, status="active", uuid="zzzzz-8i9sb-000000000000002")
    await insert_tasks(raw, mine, [task_uuid(n) for n in range(OTHERS, OTHERS + MINE)])
    # Two attempts of every task, each task's second after every task's first.
    await raw.execute(
        """INSERT INTO task_attempts (task_id, attempt, lease_id, worker_id, node_name,
          started_at, outcome)
        SELECT id, a, a || '-' || id, 'w1', 'n1', now(), 'completed'
        FROM job_tasks, generate_series(1, 2) a ORDER BY a, id"""
    )
    task_id = int(await raw.fetchval("SELECT id FROM job_tasks WHERE uuid = $1", task_uuid(5)))
    if analyzed:
        await raw.execute("ANALYZE")

    async with db.read() as conn:
        before = await _fetched(conn, "task_attempts")
        of_task = await attempts.task_attempts_of(conn, task_id, 100, 0)
        task_read = await _fetched(conn, "task_attempts") - before
        before = await _fetched(conn, "task_attempts")
        of_job = await attempts.job_attempts(conn, mine, 100, 0)
        job_read = await _fetched(conn, "task_attempts") - before
    assert [a.attempt for a in of_task] == [1, 2]
    assert [(a.task_uuid, a.attempt) for a in of_job] == [
        (task_uuid(n), attempt) for attempt in (1, 2) for n in range(OTHERS, OTHERS + MINE)
    ]
    assert task_read < 10, f"reading a task's 2 attempts read {task_read} attempt rows"
    assert job_read < 6 * MINE, f"reading {2 * MINE} attempts read {job_read} attempt rows"


@pytest.mark.parametrize("analyzed", [False, True])
async def test_locking_tasks_and_jobs_reads_those_jobs_only(store: Store, analyzed: bool) -> None:
    """Locking tasks with their jobs (a group commit of reports), or jobs named by uuid,
    in id order, among thousands of jobs: the named jobs' rows are read, not every job's."""
    db, raw = store
    await raw.execute(
        """INSERT INTO jobs (uuid, owner_uuid, created_at, modified_at, script, script_version,
          repository, script_parameters, runtime_constraints, status, priority, version,
          identity, state)
        SELECT 'zzzzz-8i9sb-' || lpad(g::text, 15, '0'), 'zzzzz-tpzed-000000000000001',
          now(), now(), 's', 'v', 'r', '{}', '{}', 'active', 1, 1, 'i', 'Running'
        FROM generate_series(1, $1) g""",
        OTHERS,
    )
    named = {n: f"zzzzz-8i9sb-{n:015d}" for n in (2900, 17, 1500)}
    ids = {}
    for n, uuid in named.items():
        ids[n] = int(await raw.fetchval("SELECT id FROM jobs WHERE uuid = $1", uuid))
        await insert_tasks(raw, ids[n], [task_uuid(n)])
    if analyzed:
        await raw.execute("ANALYZE")

    async def lock(conn: AsyncConnection) -> tuple[list[int], list[int], int]:
        before = await _fetched(conn, "jobs")
        pairs = await locks.lock_pairs(conn, [task_uuid(n) for n in named])
        by_uuid = await locks.lock_jobs_by_uuid(conn, list(named.values()))
        read_rows = await _fetched(conn, "jobs") - before
        return [job.id for job, _ in pairs], [job.id for job in by_uuid.values()], read_rows

    pair_jobs, uuid_jobs, read_rows = await db.transact(lock)
    assert pair_jobs == uuid_jobs == sorted(ids.values())
    assert read_rows < 20, f"locking 3 jobs twice read {read_rows} job rows"


@pytest.mark.parametrize("analyzed", ["never", "while small", "when big"])
async def test_locking_tasks_of_a_big_job_reads_those_tasks_only(
    store: Store, analyzed: str
) -> None:
    """A group commit of reports locks its tasks with their job: among a job's thousands
    of tasks, the named ones are read, whatever the statistics say -- including those taken
    while the job had one task, as autovacuum does early in a fan-out."""
    db, raw = store
    job = await insert_job(raw, status="active")
    await insert_tasks(raw, job, [task_uuid(0)])
    if analyzed == "while small":
        await raw.execute("ANALYZE")
    await insert_tasks(raw, job, [task_uuid(n) for n in range(1, OTHERS)], sequence=1)
    if analyzed == "when big":
        await raw.execute("ANALYZE")
    named = [task_uuid(n) for n in (2900, 17, 1500)]

    async def lock(conn: AsyncConnection) -> tuple[list[str], int]:
        before = await _fetched(conn)
        # Twice: the second run may use a plan the first cached.
        for _ in range(2):
            pairs = await locks.lock_pairs(conn, named)
        return [task.uuid for _, task in pairs], await _fetched(conn) - before

    locked, read_rows = await db.transact(lock)
    assert locked == sorted(named)
    assert read_rows < 40, f"locking 3 tasks twice read {read_rows} task rows"
