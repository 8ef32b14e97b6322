"""A claim reads about as many task rows as it takes, however many tasks the table holds.

Its candidate query walks an index of waiting tasks in id order and stops at its LIMIT. Two
PostgreSQL plans had made each claim read the whole table: joined with jobs, a job whose
tasks had no statistics yet (a fan-out minutes old) drew a plan that read every waiting task
of the job and sorted them; with statistics, the creating task's check became a hash of every
completed task, built by each claim. Measured by EXPLAIN ANALYZE of the statements the claim
sent, in both states of the statistics."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from jobtask.store import claims
from jobtask.store.database import Database
from jobtask.store.migrate import upgrade
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.core.raw_rows import connect, insert_job, insert_tasks, task_uuid
from tests.engines import engines_of

pytestmark = pytest.mark.postgres

WAITING = 3000
DONE = 3000
LIMIT = 50


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows of job_tasks a plan node and its children read (returned or filtered out)."""
    read = 0
    if plan.get("Relation Name") == "job_tasks":
        per_loop = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        read += int(per_loop * plan["Actual Loops"])
    for child in plan.get("Plans", []):
        read += _rows_read(child)
    return read


async def seeded_job(raw: Any) -> tuple[int, str]:
    """An active job and its completed first task, the seed: (job id, seed uuid)."""
    job_id = await insert_job(raw, status="active")
    seed = task_uuid(0)
    await insert_tasks(raw, job_id, [seed], status="completed")
    return job_id, seed


async def fan_out(raw: Any, job_id: int, seed: str, first: int) -> list[str]:
    """DONE completed and WAITING waiting tasks created by the seed, numbered from
    `first`: the waiting ones' uuids."""
    done = [task_uuid(n) for n in range(first, first + DONE)]
    waiting = [task_uuid(n) for n in range(first + DONE, first + DONE + WAITING)]
    await insert_tasks(raw, job_id, done, status="completed", sequence=1, created_by=seed)
    await insert_tasks(raw, job_id, waiting, sequence=1, created_by=seed)
    return waiting


@pytest.mark.parametrize("fair_share", [True, False])
@pytest.mark.parametrize("analyzed", [False, True])
async def test_a_claim_reads_a_page_not_the_table(
    postgres_url: str, analyzed: bool, fair_share: bool
) -> None:
    db = Database(postgres_url)
    await upgrade(db)
    raw = await connect(postgres_url)
    try:
        waiting = await fan_out(raw, *await seeded_job(raw), 1)
        if analyzed:
            await raw.execute("ANALYZE")

        sent: list[tuple[str, Any]] = []

        def record(*args: Any) -> None:
            sent.append((args[2], args[3]))

        (engine,) = engines_of(db)
        event.listen(engine, "before_cursor_execute", record)

        async def read(conn: AsyncConnection) -> list[Any]:
            return await claims.candidates(
                conn, "w1", LIMIT, now=dt.datetime.now(dt.UTC), turns={} if fair_share else None
            )

        found = await db.transact(read)
        event.remove(engine, "before_cursor_execute", record)
        assert [row["uuid"] for row in found] == waiting[:LIMIT]

        read_rows = 0
        for sql, params in sent:
            if "FROM job_tasks" not in sql:
                continue
            explained = await raw.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *params)
            read_rows += _rows_read(json.loads(explained)[0]["Plan"])
        assert read_rows < 10 * LIMIT, f"the claim read {read_rows} task rows"
    finally:
        await raw.close()
        await db.dispose()


@pytest.mark.parametrize("fair_share", [True, False])
async def test_a_plan_cached_while_the_table_was_small_still_reads_a_page(
    postgres_url: str, fair_share: bool
) -> None:
    """PostgreSQL keeps a prepared statement's generic plan, made once, until the table's
    statistics change: a fan-out's claims begin on a table of a few tasks, and the plan
    they settle on then must still read a page when the job has grown to thousands (with
    no ANALYZE in between, as in a fan-out's first minute). Counted by the session's own
    table statistics (rows fetched from job_tasks), on the store's only connection."""
    db = Database(postgres_url, pool_size=1, max_overflow=0)
    await upgrade(db)
    raw = await connect(postgres_url)
    try:
        job_id, seed = await seeded_job(raw)
        first = [task_uuid(n) for n in range(1, 21)]
        await insert_tasks(raw, job_id, first, sequence=1, created_by=seed)
        turns: dict[str, int] | None = {} if fair_share else None

        async def fetched(conn: AsyncConnection) -> int:
            # This session's counts not yet reported (this transaction's and maybe the
            # last few): only a difference is this claim's.
            count = await conn.execute(
                text(
                    "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0)"
                    " FROM pg_stat_xact_user_tables WHERE relname = 'job_tasks'"
                )
            )
            return int(count.scalar() or 0)

        async def read(conn: AsyncConnection) -> tuple[list[Any], int]:
            now = dt.datetime.now(dt.UTC)
            before = await fetched(conn)
            found = await claims.candidates(conn, "w1", LIMIT, now=now, turns=turns)
            return found, await fetched(conn) - before

        for _ in range(10):  # enough for PostgreSQL to settle on a generic plan
            found, _ = await db.transact(read)
            assert [row["uuid"] for row in found] == first
        waiting = await fan_out(raw, job_id, seed, 21)

        found, read_rows = await db.transact(read)
        assert [row["uuid"] for row in found] == (first + waiting)[:LIMIT]
        assert read_rows < 10 * LIMIT, f"the claim read {read_rows} task rows"
    finally:
        await raw.close()
        await db.dispose()


@pytest.mark.parametrize("fair_share", [True, False])
async def test_candidates_are_read_narrow_and_whole_once_locked(
    postgres_url: str, fair_share: bool
) -> None:
    """On PostgreSQL the chosen candidates are read again, whole, as they are locked: the
    candidate read brings only the columns the choice needs (no JSON, none of the job's
    columns), and the locked rows are whole."""
    db = Database(postgres_url)
    await upgrade(db)
    raw = await connect(postgres_url)
    try:
        waiting = await fan_out(raw, *await seeded_job(raw), 1)
    finally:
        await raw.close()

    async def read(conn: AsyncConnection) -> tuple[list[Any], list[Any]]:
        now = dt.datetime.now(dt.UTC)
        found = await claims.candidates(
            conn, "w1", LIMIT, now=now, turns={} if fair_share else None
        )
        return found, await claims.lock_candidates(conn, "w1", found[:5], now)

    try:
        found, locked = await db.transact(read)
    finally:
        await db.dispose()
    assert [row["uuid"] for row in found] == waiting[:LIMIT]
    assert {tuple(row.keys()) for row in found} == {("id", "uuid", "job_id", "owner_uuid")}
    assert [task.uuid for task, _ in locked] == waiting[:5]
    # Whole: the columns the candidate read left out come with the lock.
    assert [(task.status, task.parameters, failed) for task, failed in locked] == [
        ("queued", {}, False)
    ] * 5
