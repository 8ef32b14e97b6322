"""The Alembic migrations produce exactly the schema the code declares, on both stores,
and running them again (as a second replica starting would) changes nothing; a migration
that changes a table's keys upgrades a database holding rows, and downgrades."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from jobtask.domain.errors import AlreadyExists, FailedPrecondition
from jobtask.store import feed, migrate
from jobtask.store.database import Database
from jobtask.store.schema import job_tasks, jobs, metadata
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection


async def test_migrations_match_the_schema(database_url: str) -> None:
    db = Database(database_url)
    try:
        await asyncio.gather(migrate.upgrade(db), migrate.upgrade(db))
        assert await migrate.current_revision(db) == migrate.head_revision()
        async with db.ddl() as conn:

            def diff(sync_conn: Any) -> list[Any]:
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return list(compare_metadata(context, metadata))

            assert await conn.run_sync(diff) == []
    finally:
        await db.dispose()


async def _migrate(db: Database, downgrade_to: str | None = None) -> None:
    """Up to the head, or down to `downgrade_to`."""
    config = migrate.alembic_config()
    async with db.ddl() as conn:

        def run(sync_conn: Any) -> None:
            config.attributes["connection"] = sync_conn
            if downgrade_to is None:
                command.upgrade(config, "head")
            else:
                command.downgrade(config, downgrade_to)

        await conn.run_sync(run)
        await conn.commit()


async def _at(db: Database, revision: str) -> None:
    """The schema at `revision`: up from an empty SQLite file, down from PostgreSQL's test
    database (a clone of a template at the head)."""
    await migrate.upgrade(db, revision)
    await _migrate(db, downgrade_to=revision)
    assert await migrate.current_revision(db) == revision


_JOB = {
    "uuid": "zzzzz-8i9sb-000000000000009",
    "owner_uuid": "zzzzz-tpzed-000000000000001",
    "identity": "i",
    "priority": 0,
    "script": "s",
    "script_version": "v",
    "script_parameters": {},
    "runtime_constraints": {},
    "status": "active",
    "state": "Running",
}
_TASK = {
    "uuid": "zzzzz-ot0gb-000000000000009",
    "job_uuid": "zzzzz-8i9sb-000000000000009",
    "owner_uuid": "zzzzz-tpzed-000000000000001",
    "parameters": {},
    "runtime_constraints": {},
    "status": "active",
}
_ATTEMPT = (
    "INSERT INTO task_attempts (task_id, attempt, lease_id, worker_id, node_name, started_at)"
    " VALUES (:task, :attempt, :lease, 'w1', 'n1', :now)"
)


async def test_attempts_keyed_by_task_and_number_upgrade_with_their_rows_and_back(
    database_url: str,
) -> None:
    """Revision 0023: attempts already stored (a task tried twice, another once) keep their
    rows; afterwards a second attempt 2 of one task is refused and the lease id is not a
    key any more; downgraded, the lease id is unique again and the task id indexed."""
    db = Database(database_url)
    now = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
    try:
        await _at(db, "0022")

        async def seed(conn: AsyncConnection) -> list[int]:
            await conn.execute(insert(jobs), {**_JOB, "created_at": now, "modified_at": now})
            job_id = (await conn.execute(select(jobs.c.id))).scalar_one()
            for n in (1, 2):
                task = {**_TASK, "uuid": f"zzzzz-ot0gb-00000000000000{n}", "job_id": job_id}
                await conn.execute(
                    insert(job_tasks), {**task, "created_at": now, "modified_at": now}
                )
            ids = [r[0] for r in await conn.execute(select(job_tasks.c.id).order_by("id"))]
            for task, attempt, lease in ((ids[0], 1, "a"), (ids[0], 2, "b"), (ids[1], 1, "c")):
                params = {"task": task, "attempt": attempt, "lease": lease, "now": now}
                await conn.execute(text(_ATTEMPT), params)
            return ids

        ids = await db.transact(seed)
        await _migrate(db)
        assert await migrate.current_revision(db) == migrate.head_revision()

        async def stored(conn: AsyncConnection) -> list[tuple[Any, ...]]:
            rows = await conn.execute(
                text("SELECT task_id, attempt, lease_id FROM task_attempts ORDER BY id")
            )
            return [tuple(r) for r in rows]

        kept = [(ids[0], 1, "a"), (ids[0], 2, "b"), (ids[1], 1, "c")]
        assert await db.transact(stored) == kept

        async def again(task: int, attempt: int, lease: str) -> None:
            params = {"task": task, "attempt": attempt, "lease": lease, "now": now}

            async def write(conn: AsyncConnection) -> None:
                await conn.execute(text(_ATTEMPT), params)

            await db.transact(write)

        with pytest.raises(AlreadyExists):
            await again(ids[0], 2, "d")
        await again(ids[1], 2, "c")  # (a lease id twice: no longer a key)

        async def forget(conn: AsyncConnection) -> None:
            await conn.execute(
                text("DELETE FROM task_attempts WHERE attempt = 2 AND lease_id = 'c'")
            )

        await db.transact(forget)
        await _migrate(db, downgrade_to="0022")
        assert await migrate.current_revision(db) == "0022"
        assert await db.transact(stored) == kept
        with pytest.raises(AlreadyExists):
            await again(ids[1], 2, "c")
        await _migrate(db)
        assert await db.transact(stored) == kept
    finally:
        await db.dispose()


async def test_attempts_sharing_a_number_stop_revision_0023_with_the_tasks_named(
    database_url: str,
) -> None:
    """Two attempts of one task with one number (not written by jobtask) would break 0023's
    unique index: `jobtask db upgrade` refuses, names the task, exits 1 and changes nothing."""
    db = Database(database_url)
    now = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
    try:
        await _at(db, "0022")

        async def seed(conn: AsyncConnection) -> None:
            await conn.execute(insert(jobs), {**_JOB, "created_at": now, "modified_at": now})
            job_id = (await conn.execute(select(jobs.c.id))).scalar_one()
            await conn.execute(
                insert(job_tasks),
                {**_TASK, "job_id": job_id, "created_at": now, "modified_at": now},
            )
            task = (await conn.execute(select(job_tasks.c.id))).scalar_one()
            for lease in ("a", "b"):
                params = {"task": task, "attempt": 1, "lease": lease, "now": now}
                await conn.execute(text(_ATTEMPT), params)

        await db.transact(seed)
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "jobtask.cli.main",
                "db",
                "upgrade",
                "--database-url",
                database_url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        assert "zzzzz-ot0gb-000000000000009 attempt 1 (2 rows)" in done.stderr
        assert "Nothing was changed" in done.stderr
        assert "Traceback" not in done.stderr
        assert await migrate.current_revision(db) == "0022"
        with pytest.raises(FailedPrecondition):
            await migrate.upgrade(db)
    finally:
        await db.dispose()


_PAYLOADS = (
    {"uuid": "zzzzz-ot0gb-000000000000001", "status": "queued", "parameters": {"b": 1, "a": 2}},
    {"uuid": "zzzzz-ot0gb-000000000000002", "progress": 0.5, "log": "é ✓", "output": None},
)


async def test_event_payloads_as_json_upgrade_with_their_rows_and_back(
    database_url: str,
) -> None:
    """Revision 0024: events already stored read back the same after it and after its
    downgrade, and new ones are written either way; on PostgreSQL the payload column is
    `json` after it (no JSONB parse per insert) and `jsonb` again after the downgrade."""
    db = Database(database_url)
    now = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
    job = "zzzzz-8i9sb-000000000000001"
    try:
        await _at(db, "0023")

        async def append(conn: AsyncConnection, payload: dict[str, Any]) -> None:
            await feed.append(conn, job, "task", payload, task_uuid=payload["uuid"], now=now)

        async def payloads(conn: AsyncConnection) -> list[dict[str, Any]]:
            return [row["payload"] for row in await feed.read_after(conn, job, 0)]

        async def column_type(conn: AsyncConnection) -> str | None:
            if conn.dialect.name != "postgresql":
                return None
            found = await conn.execute(
                text(
                    "SELECT data_type FROM information_schema.columns"
                    " WHERE table_name = 'events' AND column_name = 'payload'"
                )
            )
            return str(found.scalar_one())

        await db.transact(lambda conn: append(conn, _PAYLOADS[0]))
        await _migrate(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
        postgres = db.dialect == "postgresql"
        assert await db.transact(column_type) == ("json" if postgres else None)
        assert await db.transact(payloads) == [_PAYLOADS[0]]
        await db.transact(lambda conn: append(conn, _PAYLOADS[1]))
        assert await db.transact(payloads) == list(_PAYLOADS)

        await _migrate(db, downgrade_to="0023")
        assert await migrate.current_revision(db) == "0023"
        assert await db.transact(column_type) == ("jsonb" if postgres else None)
        assert await db.transact(payloads) == list(_PAYLOADS)
    finally:
        await db.dispose()
