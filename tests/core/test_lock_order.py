"""One statement locks a task's job and the task (locks.lock_task, locks.lock_pairs), and it
still takes the job's row first: every writer locks a job before its tasks, so a statement that
took the task first could hold it while waiting for the job that another writer holds while
waiting for the task -- a deadlock PostgreSQL ends only after a second, by failing one of them.
"""

from __future__ import annotations

import asyncio

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest
from jobtask.store import locks
from jobtask.store.database import Database
from jobtask.store.migrate import upgrade
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.core.raw_rows import connect, insert_job, insert_tasks, task_uuid
from tests.polling import DEADLINE, eventually

pytestmark = pytest.mark.postgres


async def _is_locked(conn: asyncpg.Connection, table: str, column: str, value: object) -> bool:
    async with conn.transaction():
        try:
            await conn.execute(
                f"SELECT 1 FROM {table} WHERE {column} = $1 FOR UPDATE NOWAIT", value
            )
        except asyncpg.LockNotAvailableError:
            return True
    return False


async def _job_is_locked(conn: asyncpg.Connection, job_id: int) -> bool:
    return await _is_locked(conn, "jobs", "id", job_id)


async def _task_is_locked(conn: asyncpg.Connection, uuid: str) -> bool:
    return await _is_locked(conn, "job_tasks", "uuid", uuid)


@pytest.mark.parametrize("several", [False, True])
async def test_the_job_is_locked_before_its_task(postgres_url: str, several: bool) -> None:
    db = Database(postgres_url)
    await upgrade(db)
    holder, prober = await connect(postgres_url), await connect(postgres_url)
    uuids = [task_uuid(1), task_uuid(2)]
    try:
        job_id = await insert_job(holder)
        await insert_tasks(holder, job_id, uuids)
        # Another transaction holds the first task's row, as a writer of it would.
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT 1 FROM job_tasks WHERE uuid = $1 FOR UPDATE", uuids[0])
        assert not await _job_is_locked(prober, job_id)

        async def lock(conn: AsyncConnection) -> int:
            if several:
                return len(await locks.lock_pairs(conn, uuids))
            await locks.lock_task(conn, uuids[0])
            return 1

        locking = asyncio.create_task(db.transact(lock))
        # Waiting for the task, the statement already holds the job.
        await eventually(lambda: _job_is_locked(prober, job_id))
        assert not locking.done()
        await held.rollback()
        assert await asyncio.wait_for(locking, DEADLINE) == (2 if several else 1)
    finally:
        await holder.close()
        await prober.close()
        await db.dispose()


async def test_a_claims_first_job_is_waited_for_and_the_others_skipped_in_one_statement(
    postgres_url: str,
) -> None:
    """locks.lock_job_then_others: the claim's first job is waited for, then the others are
    locked unless another transaction holds them -- in this order, in one statement."""
    db = Database(postgres_url)
    await upgrade(db)
    holder, prober = await connect(postgres_url), await connect(postgres_url)
    try:
        ids = [await insert_job(holder, uuid=f"zzzzz-8i9sb-00000000000000{n}") for n in (1, 2, 3)]
        # Another transaction holds the first job and the third.
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT 1 FROM jobs WHERE id = ANY($1) FOR UPDATE", [ids[0], ids[2]])

        async def lock(conn: AsyncConnection) -> list[int]:
            return sorted(await locks.lock_job_then_others(conn, ids[0], ids[1:]))

        locking = asyncio.create_task(db.transact(lock))
        # Waiting for the first job, the statement holds none of the others yet.
        await eventually(lambda: _waits_for_a_lock(prober))
        assert not locking.done()
        assert not await _job_is_locked(prober, ids[1])
        await held.rollback()
        # The others were tried after the first was got: the third, free by then, is taken.
        assert await asyncio.wait_for(locking, DEADLINE) == ids

        # Held meanwhile, an other is left out, without waiting.
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", ids[2])
            assert await asyncio.wait_for(db.transact(lock), DEADLINE) == ids[:2]
    finally:
        await holder.close()
        await prober.close()
        await db.dispose()


async def _waits_for_a_lock(conn: asyncpg.Connection) -> bool:
    waiting = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    return bool(waiting)


async def test_a_group_locks_all_its_jobs_before_any_task_in_one_statement(
    postgres_url: str,
) -> None:
    """locks.lock_pairs on PostgreSQL (a group commit of reports): one statement, which
    locks every named task's job, in id order, before it locks any task -- waiting for the
    second job, it holds the first job and none of the tasks."""
    db = Database(postgres_url)
    await upgrade(db)
    holder, prober = await connect(postgres_url), await connect(postgres_url)
    try:
        ids = [await insert_job(holder, uuid=f"zzzzz-8i9sb-00000000000000{n}") for n in (1, 2)]
        await insert_tasks(holder, ids[0], [task_uuid(1)])
        await insert_tasks(holder, ids[1], [task_uuid(2)])
        # Another transaction holds the second job.
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", ids[1])
        statements: list[str] = []

        async def lock(conn: AsyncConnection) -> list[tuple[int, str]]:
            sync = conn.sync_connection
            assert sync is not None

            def seen(*args: object) -> None:
                statements.append(str(args[2]))

            event.listen(sync, "before_cursor_execute", seen)
            try:
                pairs = await locks.lock_pairs(conn, [task_uuid(2), task_uuid(1)])
            finally:
                event.remove(sync, "before_cursor_execute", seen)
            return [(job.id, task.uuid) for job, task in pairs]

        locking = asyncio.create_task(db.transact(lock))
        await eventually(lambda: _waits_for_a_lock(prober))
        assert not locking.done()
        assert await _job_is_locked(prober, ids[0])
        assert not await _task_is_locked(prober, task_uuid(1))
        assert not await _task_is_locked(prober, task_uuid(2))
        await held.rollback()
        pairs = await asyncio.wait_for(locking, DEADLINE)
        assert pairs == [(ids[0], task_uuid(1)), (ids[1], task_uuid(2))]
        assert len(statements) == 1, statements
    finally:
        await holder.close()
        await prober.close()
        await db.dispose()
