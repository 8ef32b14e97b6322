"""Fair share's owners of a priority level are read by a walk from owner to owner
(store.claims.owners), not by grouping the level's jobs: a queue of one-task jobs is as
long as its queue of tasks, and every claim reads the owners."""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

from jobtask.store import claims
from jobtask.store.database import Database
from jobtask.store.migrate import upgrade
from jobtask.store.schema import jobs
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

NOW = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)


def _owner(n: int) -> str:
    return f"zzzzz-tpzed-{n:015d}"


def _job(n: int, owner: int, status: str, priority: int = 1) -> dict[str, Any]:
    return {
        "uuid": f"zzzzz-8i9sb-{n:015d}",
        "owner_uuid": _owner(owner),
        "created_at": NOW,
        "modified_at": NOW,
        "script": "s",
        "script_version": "",
        "script_parameters": {},
        "runtime_constraints": {},
        "status": status,
        "priority": priority,
        "version": 1,
        "identity": f"i{n}",
        "state": "Queued",
    }


async def _add(db: Database, rows: list[dict[str, Any]]) -> None:
    async def run(conn: AsyncConnection) -> None:
        await conn.execute(insert(jobs), rows)

    await db.transact(run)


async def test_the_owners_of_a_level_with_their_oldest_dispatchable_job(
    database_url: str,
) -> None:
    db = Database(database_url)
    await upgrade(db)
    try:
        await _add(
            db,
            [
                _job(1, 1, "completed"),  # not dispatchable: not counted
                _job(2, 2, "active"),
                _job(3, 1, "queued"),
                _job(4, 2, "queued"),
                _job(5, 3, "active", priority=2),  # another level
                _job(6, 1, "active"),
                _job(7, 4, "failed"),
            ],
        )

        async def read(conn: AsyncConnection) -> list[tuple[str, int]]:
            level = await claims.owners(conn, 1)
            assert level is not None
            return level.owners

        found = sorted(await db.transact(read))
        async with db.read() as conn:
            rows = await conn.execute(select(jobs.c.uuid, jobs.c.id))
            ids: dict[str, int] = {row.uuid: row.id for row in rows}
        assert found == [
            (_owner(1), ids["zzzzz-8i9sb-000000000000003"]),
            (_owner(2), ids["zzzzz-8i9sb-000000000000002"]),
        ]

        # The same statement finds the highest level at most the one asked for, and the
        # next one below it.
        async def levels(conn: AsyncConnection) -> list[Any]:
            out = []
            for at_most in (2**31 - 1, 1, 0):
                level = await claims.owners(conn, at_most)
                out.append(level and (level.priority, sorted(level.owners), level.below))
            return out

        assert await db.transact(levels) == [
            (2, [(_owner(3), ids["zzzzz-8i9sb-000000000000005"])], 1),
            (1, found, None),
            None,
        ]
    finally:
        await db.dispose()


async def _steps_of_candidates(db: Database) -> int:
    """SQLite virtual machine steps (in hundreds) a fair-share candidates read takes."""

    async def read(conn: AsyncConnection) -> int:
        sync = conn.sync_connection
        assert sync is not None
        raw = sync.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        raw.set_progress_handler(count, 100)
        try:
            await claims.candidates(conn, "w1", 50, now=NOW, turns={})
        finally:
            raw.set_progress_handler(None, 0)
        return steps[0]

    return await db.transact(read)


async def test_a_fair_share_read_does_not_grow_with_the_queue(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    await upgrade(db)
    try:
        # Two owners' queued jobs (no tasks: the owners' walk is what is measured).
        await _add(db, [_job(n, n % 2, "queued") for n in range(200)])
        short = await _steps_of_candidates(db)
        await _add(db, [_job(n, n % 2, "queued") for n in range(200, 20_000)])
        long = await _steps_of_candidates(db)
        assert long < 2 * short + 10, f"{short} steps with 200 queued jobs, {long} with 20,000"
    finally:
        await db.dispose()
