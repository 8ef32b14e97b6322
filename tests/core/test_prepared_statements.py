"""A claim's statements are the same prepared statements whatever the claim's size.

SQLAlchemy's asyncpg driver prepares each statement text once per connection, and
PostgreSQL caches a plan per prepared statement (after five custom plans it may settle on a
generic one). A list rendered as `IN ($1, $2, ...)` made each length a statement of its
own, prepared again -- claims of 1, 2, 3... tasks, or a claim's second round skipping the
tasks its first one took. Lists are one array parameter on PostgreSQL
(jobtask.store.arrays). Read from pg_prepared_statements on the store's only
connection."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

import pytest
from jobtask.store import claims, locks
from jobtask.store.database import SESSION_SETTINGS, Database
from jobtask.store.migrate import upgrade
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.core.raw_rows import connect, insert_job, insert_tasks, task_uuid
from tests.polling import eventually

pytestmark = pytest.mark.postgres

CLAIMS = 8
SKIPPING = 3
# A claim reads a page of this many candidates whatever it takes (as the manager does).
PAGE = 10


@pytest.mark.parametrize("fair_share", [True, False])
async def test_claims_of_every_size_share_prepared_statements(
    postgres_url: str, fair_share: bool
) -> None:
    db = Database(postgres_url, pool_size=1, max_overflow=0)
    await upgrade(db)
    raw = await connect(postgres_url)
    try:
        job_id = await insert_job(raw, status="active")
        await insert_tasks(raw, job_id, [task_uuid(n) for n in range(1, 100)])
    finally:
        await raw.close()

    async def claim(size: int, skipped: list[int]) -> list[int]:
        async def run(conn: AsyncConnection) -> list[int]:
            now = dt.datetime.now(dt.UTC)
            turns: dict[str, int] | None = {} if fair_share else None
            page = await claims.candidates(
                conn, "w1", PAGE, now=now, skip_tasks=skipped, turns=turns
            )
            # (Candidates on PostgreSQL: asyncpg Records, read by position or key.)
            assert not {row["id"] for row in page} & set(skipped)
            found = page[:size]
            assert await locks.try_lock_jobs(conn, {row["job_id"] for row in found})
            locked = await claims.lock_candidates(conn, "w1", found, now)
            assert [task.id for task, _ in locked] == [row["id"] for row in found]
            return [task.id for task, _ in locked]

        return await db.transact(run)

    try:
        # Nothing is written: each claim finds the first tasks again, or skips some.
        for size in range(1, CLAIMS + 1):
            first = await claim(size, [])
        for size in range(1, SKIPPING + 1):
            await claim(size, first[:size])
        async with db.read() as conn:
            prepared: list[Any] = list(
                await conn.execute(
                    text(
                        "SELECT statement, generic_plans, generic_plans + custom_plans AS runs"
                        " FROM pg_prepared_statements WHERE NOT from_sql"
                    )
                )
            )
    finally:
        await db.dispose()

    def of(*parts: str, locking: bool = True) -> list[Any]:
        return [
            row
            for row in prepared
            if all(part in row.statement for part in parts)
            and ("FOR UPDATE" in row.statement) == locking
        ]

    # One statement each, run by every claim, whatever the number of tasks, of jobs or
    # of tasks skipped.
    (tasks,) = of("FOR UPDATE OF job_tasks SKIP LOCKED")
    (jobs,) = of("ORDER BY jobs.id FOR UPDATE SKIP LOCKED")
    assert tasks.runs == jobs.runs == CLAIMS + SKIPPING
    pages = of("FROM job_tasks", "ORDER BY job_tasks.id", locking=False)
    assert len(pages) == (1 if fair_share else 2)  # one per waiting status, or one union
    assert [page.runs for page in pages] == [CLAIMS + SKIPPING] * len(pages)
    # Whether PostgreSQL then settles on a generic plan is its own choice, made from the
    # table's statistics: on these new rows it did, until autovacuum's ANALYZE landed
    # between the claims (CI, once in eight runs; with statistics it plans each claim).
    # That any plan it keeps holds as the table grows is test_claim_reads.py's.


async def test_the_stores_sessions_plan_for_index_access_and_compile_nothing(
    postgres_url: str,
) -> None:
    """A plan made on a small table is the one for a big one (SESSION_SETTINGS; the
    cached-plan test in test_claim_reads.py), and no JIT: a plan estimated costly would be
    compiled at each run (tens of milliseconds for a statement that runs in one)."""
    db = Database(postgres_url)
    try:
        async with db.read() as conn:
            for name in ("jit", "enable_seqscan", "enable_sort", "enable_hashjoin"):
                assert (await conn.execute(text(f"SHOW {name}"))).scalar() == "off", name
    finally:
        await db.dispose()


async def test_a_store_session_left_idle_in_a_transaction_is_ended_by_the_server(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session its process lost hold of inside a transaction would keep its locks until
    its socket closed: the server ends it after a minute (SESSION_SETTINGS). Here the minute
    is shortened (the setting's value patched before the store connects), and a transaction
    that takes a lock and then waits without a statement loses its session and the lock."""
    db = Database(postgres_url)
    try:
        async with db.read() as conn:
            shown = (await conn.execute(text("SHOW idle_in_transaction_session_timeout"))).scalar()
    finally:
        await db.dispose()
    assert shown == "1min"

    monkeypatch.setitem(SESSION_SETTINGS, "idle_in_transaction_session_timeout", "300")
    db = Database(postgres_url)
    other = await connect(postgres_url)
    held, freed = asyncio.Event(), asyncio.Event()

    async def hold_then_idle(conn: AsyncConnection) -> None:
        if freed.is_set():
            return  # (a re-run of the transaction: nothing to show)
        await conn.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        held.set()
        await freed.wait()

    async def lock_freed() -> bool:
        return bool(await other.fetchval("SELECT pg_try_advisory_lock(4242)"))

    holder = asyncio.ensure_future(db.transact(hold_then_idle))
    try:
        await eventually(held.is_set)
        await eventually(lock_freed)
        freed.set()
        with contextlib.suppress(Exception):  # (its commit finds the session gone)
            await holder
    finally:
        holder.cancel()
        await other.close()
        await db.dispose()


async def test_the_pool_hands_out_the_connection_returned_last(postgres_url: str) -> None:
    """A connection's prepared statements and plans are its own, and PostgreSQL plans each
    statement anew for its first five runs on it. The pool hands out the connection
    returned last (pool_use_lifo), so the few transactions a worker's session keeps busy
    run on connections that planned them; handed out in turn, every pooled connection
    planned every statement five times."""
    db = Database(postgres_url)

    async def pid(conn: AsyncConnection) -> int:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    try:
        async with db.read() as first:
            async with db.read() as second:
                returned_first = await pid(second)
            returned_last = await pid(first)
        for _ in range(3):
            async with db.read() as conn:
                assert await pid(conn) == returned_last != returned_first
    finally:
        await db.dispose()
