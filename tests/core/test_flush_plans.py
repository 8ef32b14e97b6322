"""A flush reads about as many rows as it writes, however many the tables hold.

The PostgreSQL flush is one statement of data-modifying CTEs, each joining the flush's rows
(`unnest` of arrays) with the table it writes. The plan must let the flush's rows drive,
each finding its table row through an index: a plan that walks the table instead costs
every flush a read of every row ever written. Measured by EXPLAIN ANALYZE of the statement
the flush sent, on a table of thousands of closed attempts and a few open ones, with no
statistics (a store minutes old) and with them, as a custom and as a generic plan. New rows
go in the same form: one INSERT of arrays, its parameters not one per row and column."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from jobtask.store import flush_sql, task_writes
from jobtask.store.database import SESSION_SETTINGS, Database
from jobtask.store.migrate import upgrade
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.core.raw_rows import JOB_UUID, OWNER_UUID, connect, insert_job, insert_tasks, task_uuid
from tests.engines import engines_of

pytestmark = pytest.mark.postgres

CLOSED = 1000
OPEN = 100
NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)
T = TypeVar("T")


def _rows_read(plan: dict[str, Any], relation: str) -> int:
    """Rows of `relation` a plan node and its children read (returned, filtered out, or
    compared in a join and rejected)."""
    read = 0
    if plan.get("Relation Name") == relation:
        per_loop = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        read += int(per_loop * plan["Actual Loops"])
    if any(child.get("Relation Name") == relation for child in plan.get("Plans", [])):
        read += int(plan.get("Rows Removed by Join Filter", 0))
    for child in plan.get("Plans", []):
        read += _rows_read(child, relation)
    return read


async def _transact_recorded(
    db: Database, work: Callable[[AsyncConnection], Awaitable[T]]
) -> tuple[T, list[tuple[str, Any]]]:
    """`work`'s result in a transaction of the store, and the statements it sent (text and
    parameters as the driver got them)."""
    sent: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        sent.append((args[2], args[3]))

    (engine,) = engines_of(db)
    event.listen(engine, "before_cursor_execute", record)
    try:
        result = await db.transact(work)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return result, sent


@pytest.mark.parametrize("plan", ["auto", "force_generic_plan"])
@pytest.mark.parametrize("analyzed", [False, True])
async def test_closing_leases_reads_their_attempts_not_the_table(
    postgres_url: str, analyzed: bool, plan: str
) -> None:
    """`plan`: the session's plan_cache_mode, force_generic_plan standing for the plan a
    prepared statement settles on after its first runs and keeps."""
    db = Database(postgres_url)
    await upgrade(db)
    raw = await connect(postgres_url)
    try:
        job_id = await insert_job(raw, status="active")
        uuids = [task_uuid(n) for n in range(CLOSED + OPEN)]
        await insert_tasks(raw, job_id, uuids, status="completed")
        ids = [r["id"] for r in await raw.fetch("SELECT id FROM job_tasks ORDER BY id")]
        await raw.executemany(
            """INSERT INTO task_attempts (task_id, attempt, lease_id, worker_id, node_name,
              started_at, ended_at, outcome) VALUES ($1, 1, $2, 'w1', 'n1', $3, $4, $5)""",
            [
                (task_id, f"lease-{n}", NOW, NOW if n < CLOSED else None, "completed")
                for n, task_id in enumerate(ids)
            ],
        )
        await raw.execute("UPDATE task_attempts SET outcome = NULL WHERE ended_at IS NULL")
        if analyzed:
            await raw.execute("ANALYZE")
        leases = [f"lease-{n}" for n in range(CLOSED, CLOSED + OPEN)]
        closing = flush_sql.Flush(
            closed=[
                {
                    "task": task_id,
                    "number": 1,
                    "ended": NOW,
                    "outcome": "completed",
                    "exit_code": 0,
                    "signal": None,
                    "lease_expires": None,
                }
                for task_id in ids[CLOSED:]
            ]
        )

        async def flush(conn: AsyncConnection) -> None:
            await flush_sql.send(conn, closing)

        _, sent = await _transact_recorded(db, flush)
        still_open = await raw.fetchval("SELECT count(*) FROM task_attempts WHERE ended_at IS NULL")
        assert still_open == 0

        (statement,) = [(sql, params) for sql, params in sent if "task_attempts" in sql]
        sql, params = statement
        # The same statement again, on the attempts reopened, its work measured in a session
        # set as the store's are.
        for name, value in SESSION_SETTINGS.items():
            await raw.execute(f"SET {name} = {value}")
        await raw.execute(f"SET plan_cache_mode = {plan}")
        await raw.execute(
            "UPDATE task_attempts SET ended_at = NULL, outcome = NULL"
            " WHERE lease_id = ANY($1::text[])",
            leases,
        )
        explained = await raw.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *params)
        assert await raw.fetchval("SELECT count(*) FROM task_attempts WHERE ended_at IS NULL") == 0
        read = _rows_read(json.loads(explained)[0]["Plan"], "task_attempts")
        assert read < 3 * OPEN, f"closing {OPEN} leases read {read} attempt rows"
        # Each found by its key, the task and the attempt's number (revision 0023).
        assert '"Index Name": "uq_task_attempts_task_id_attempt"' in explained
        assert "(task_id = c.task_id) AND (attempt = c.attempt)" in explained
    finally:
        await raw.close()
        await db.dispose()


async def test_new_tasks_are_one_statement_of_a_few_parameters_in_their_order(
    postgres_url: str,
) -> None:
    """A thousand new tasks are one INSERT whose parameters do not grow with the rows (the
    flush's arrays), and their ids follow the order they were given in."""
    db = Database(postgres_url)
    await upgrade(db)
    raw = await connect(postgres_url)
    try:
        job_id = await insert_job(raw, status="active")
        count = 1000
        # Given in an order that is not the uuids' (nor any index's).
        order = [(n * 389) % count for n in range(count)]
        rows = [
            {
                "uuid": task_uuid(n),
                "job_id": job_id,
                "job_uuid": JOB_UUID,
                "owner_uuid": OWNER_UUID,
                "created_at": NOW,
                "modified_at": NOW,
                "sequence": 1,
                "parameters": {"n": n},
                "runtime_constraints": {},
                "status": "queued",
            }
            for n in order
        ]
        written, sent = await _transact_recorded(
            db, lambda conn: task_writes.insert_tasks(conn, rows)
        )

        inserts = [params for sql, params in sent if "INSERT INTO job_tasks" in sql]
        assert len(inserts) == 1
        assert len(inserts[0]) < 20
        assert [t.uuid for t in written] == [row["uuid"] for row in rows]
        stored = await raw.fetch("SELECT uuid, parameters FROM job_tasks ORDER BY id")
        assert [r["uuid"] for r in stored] == [row["uuid"] for row in rows]
        assert [json.loads(r["parameters"]) for r in stored] == [{"n": n} for n in order]
        assert sorted(t.id for t in written) == [t.id for t in written]
    finally:
        await raw.close()
        await db.dispose()
