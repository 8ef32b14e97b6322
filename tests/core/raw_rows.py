"""A job and its tasks written straight into a migrated PostgreSQL database with asyncpg, for
store tests that need rows in a given state (locks held by another session, a table of many
tasks) rather than what the services would make of them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]  # no stubs published
from sqlalchemy.engine import make_url

JOB_UUID = "zzzzz-8i9sb-000000000000001"
OWNER_UUID = "zzzzz-tpzed-000000000000001"
# The sessions of the test's own database that wait for a lock (pg_locks covers the whole
# server, whose other databases serve the suite's other process; a wait for a held row is a
# wait for its transaction, which names no database there).
_LOCK_WAITS = (
    "FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
)


async def lock_waits(conn: asyncpg.Connection, *, besides: list[int] | None = None) -> list[int]:
    """The process ids of the sessions (of the test's database) that wait for a lock, but
    for `besides`. A session reads pg_stat_activity's list of sessions once per transaction
    and keeps it to the transaction's end, so a lock holder asking inside its transaction
    would never see a session opened after its first look (a pooled connection opened
    anew): the list is dropped first."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    pids = await conn.fetchval(
        "SELECT array_agg(pid) " + _LOCK_WAITS + " AND NOT (pid = ANY($1))", besides or []
    )
    return list(pids or [])


async def connect(url: str) -> asyncpg.Connection:
    """A plain asyncpg session on the database a test URL names (SQLAlchemy's form)."""
    u = make_url(url)
    return await asyncpg.connect(
        user=u.username, password=u.password, host=u.host, port=u.port, database=u.database
    )


@contextlib.asynccontextmanager
async def session(url: str) -> AsyncIterator[asyncpg.Connection]:
    """connect(url) for the block, closed after it."""
    conn = await connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def insert_job(
    conn: asyncpg.Connection, status: str = "queued", *, uuid: str = JOB_UUID
) -> int:
    """The job JOB_UUID, or `uuid` (priority 1); its id."""
    return int(
        await conn.fetchval(
            """INSERT INTO jobs (uuid, owner_uuid, created_at, modified_at, script,
              script_version, repository, script_parameters, runtime_constraints, status,
              priority, version, identity, state)
            VALUES ($1, $2, now(), now(), 's', 'v', 'r', '{}', '{}', $3, 1, 1, 'i', 'Queued')
            RETURNING id""",
            uuid,
            OWNER_UUID,
            status,
        )
    )


async def insert_tasks(
    conn: asyncpg.Connection,
    job_id: int,
    uuids: list[str],
    *,
    status: str = "queued",
    sequence: int = 0,
    created_by: str | None = None,
) -> None:
    """Tasks of the job (its uuid copied as the store does), one statement."""
    await conn.execute(
        """INSERT INTO job_tasks (uuid, job_id, job_uuid, owner_uuid, created_at, modified_at,
          sequence, parameters, runtime_constraints, status, version, created_by_job_task_uuid)
        SELECT u, $2, (SELECT uuid FROM jobs WHERE id = $2), $3, now(), now(), $4, '{}', '{}',
          $5, 1, $6 FROM unnest($1::text[]) u""",
        uuids,
        job_id,
        OWNER_UUID,
        sequence,
        status,
        created_by,
    )


def task_uuid(n: int) -> str:
    return f"zzzzz-ot0gb-{n:015d}"
