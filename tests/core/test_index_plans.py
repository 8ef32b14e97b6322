"""Each lookup reads through its index, on both stores, now that the indexes hold only the
rows their lookups can find (revision 0022): job_tasks' waiting, leased, token and creator
indexes are partial on SQLite as on PostgreSQL, the status index leaves out active and
completed tasks, and jobs' claim probes use ix_jobs_fair. SQLite uses a partial index only
when it can prove the query implies the index's condition, PostgreSQL only when the plan's
parameters do: a lookup whose text stops proving it reads the whole table instead.

Checked by the plans of the statements each store function sends (EXPLAIN QUERY PLAN on
SQLite, EXPLAIN on PostgreSQL), on a table of tasks in every status, ANALYZEd."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from jobtask.domain.query import Condition, ListQuery
from jobtask.store import attempts, claims, flush_sql, leases, tasks, tokens, workers
from jobtask.store import jobs as jobs_store
from jobtask.store.database import Database
from jobtask.store.migrate import upgrade
from jobtask.store.schema import job_tasks, jobs, task_attempts
from sqlalchemy import event, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import shared_postgres_database

JOBS = 100
TASKS = 20_000
CLUSTER = "zzzzz"
NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Admin:
    user_uuid: str = f"{CLUSTER}-tpzed-000000000000000"
    is_admin: bool = True


def _job_uuid(n: int) -> str:
    return f"{CLUSTER}-8i9sb-{n:015d}"


def _task_uuid(n: int) -> str:
    return f"{CLUSTER}-ot0gb-{n:015d}"


def _digest(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


# Task n's status: mostly completed, as in a store that has run for a while.
_STATUSES = ["completed"] * 14 + ["queued", "failed", "canceled", "soft-failed", "paused"]


def _task(n: int) -> dict[str, Any]:
    job = 1 + n % JOBS
    status = "active" if n % 100 == 1 else _STATUSES[n % len(_STATUSES)]
    active = status == "active"
    return {
        "uuid": _task_uuid(n),
        "job_id": job,
        "job_uuid": _job_uuid(job),
        "owner_uuid": f"{CLUSTER}-tpzed-{job % 10:015d}",
        "created_at": NOW,
        "modified_at": NOW - dt.timedelta(seconds=n),
        "sequence": 0 if n <= JOBS else 1,
        "parameters": {},
        "runtime_constraints": {},
        # Every task after each job's first is its first task's child.
        "created_by_job_task_uuid": None if n <= JOBS else _task_uuid(1 + (n - 1) % JOBS),
        "status": status,
        "worker_id": f"w{n // 100 % 20}" if active else None,
        "node_name": f"n{n // 100 % 20}" if active else None,
        "lease_id": f"lease-{n}" if active else None,
        # One lease in ten expired.
        "lease_expires_at": NOW + dt.timedelta(seconds=-60 if n % 1000 == 1 else 60)
        if active
        else None,
        "token_digest": _digest(n) if active else None,
        "runnable_after": NOW + dt.timedelta(seconds=n) if status == "soft-failed" else None,
    }


def _attempts(n: int) -> list[dict[str, Any]]:
    """Task n's attempts: none for a queued task, one or (every third task) two else; the
    last is open if the task is active."""
    status = _task(n)["status"]
    if status == "queued":
        return []
    tries = 2 if n % 3 == 0 else 1
    return [
        {
            "task_id": n,
            "attempt": a,
            "lease_id": f"lease-{n}" if a == tries else f"lease-{n}-{a}",
            "worker_id": f"w{n // 100 % 20}",
            "node_name": f"n{n // 100 % 20}",
            "started_at": NOW,
            "ended_at": None if status == "active" and a == tries else NOW,
            "outcome": None if status == "active" and a == tries else "completed",
        }
        for a in range(1, tries + 1)
    ]


def _job(n: int) -> dict[str, Any]:
    return {
        "uuid": _job_uuid(n),
        "owner_uuid": f"{CLUSTER}-tpzed-{n % 10:015d}",
        "created_at": NOW,
        "modified_at": NOW,
        "identity": f"i{n}",
        "priority": n % 3,
        "script": "s",
        "script_parameters": {},
        "script_version": "v",
        "runtime_constraints": {},
        "status": ["queued", "active", "completed", "failed"][n % 4],
        "state": "Queued",
    }


async def _seed(url: str) -> None:
    """The schema, the rows above and their statistics, into the (empty) database at `url`."""
    db = Database(url)
    try:
        await upgrade(db)

        async def seed(conn: AsyncConnection) -> None:
            await conn.execute(insert(jobs), [_job(n) for n in range(1, JOBS + 1)])
            await conn.execute(insert(job_tasks), [_task(n) for n in range(1, TASKS + 1)])
            tried = [a for n in range(1, TASKS + 1) for a in _attempts(n)]
            await conn.execute(insert(task_attempts), tried)

        await db.transact(seed)
        async with db.ddl() as conn:
            await conn.execute(text("ANALYZE"))
    finally:
        await db.dispose()


# The seeded store, made once per pytest process and store (seeding and ANALYZE took 10-33 s
# a test on PostgreSQL) and shared by the tests: each lookup runs in a transaction that is
# rolled back (_indexes_used), so the closes, which write, leave it as seeded.
_sqlite_seeded: list[str] = []


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The seeded store, on SQLite and on PostgreSQL."""
    if request.param == "postgres":
        return await shared_postgres_database("plans", _seed)
    if not _sqlite_seeded:
        url = f"sqlite:///{tmp_path_factory.mktemp('index_plans') / 'seeded.sqlite3'}"
        await _seed(url)
        _sqlite_seeded.append(url)
    return _sqlite_seeded[0]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    try:
        yield db
    finally:
        await db.dispose()


Lookup = Callable[[AsyncConnection], Awaitable[Any]]


async def _indexes_used(db: Database, lookup: Lookup, *, generic: bool = False) -> set[str]:
    """The indexes the plans of the statements `lookup` sends read (any table's).
    `generic`: on PostgreSQL, the plans made without the parameters' values, as the cached
    plan of a statement run often may be (asyncpg prepares every statement)."""

    async def run(conn: AsyncConnection) -> set[str]:
        sent: list[tuple[str, Any]] = []

        def record(*args: Any) -> None:
            # An executemany's plan: its first row's (a flush's statements on SQLite).
            sent.append((args[2], args[3][0] if args[5] else args[3]))

        event.listen(conn.sync_connection, "before_cursor_execute", record)
        try:
            await lookup(conn)
        finally:
            event.remove(conn.sync_connection, "before_cursor_execute", record)
        used: set[str] = set()
        for sql, params in sent:
            if conn.dialect.name == "postgresql":
                if generic:
                    await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
                    await conn.exec_driver_sql(f"PREPARE lookup AS {sql}")
                    args = ", ".join(_literal(value) for value in params)
                    result = await conn.exec_driver_sql(
                        f"EXPLAIN (FORMAT JSON) EXECUTE lookup({args})"
                        if params
                        else "EXPLAIN (FORMAT JSON) EXECUTE lookup"
                    )
                    plan = result.scalar()
                    await conn.exec_driver_sql("DEALLOCATE lookup")
                else:
                    result = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params)
                    plan = result.scalar()
                used |= _pg_indexes(json.loads(plan) if isinstance(plan, str) else plan)
            else:
                result = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
                for row in result:
                    used |= set(re.findall(r"INDEX (\w+)", str(row[-1])))
        raise _RolledBack(used)

    try:
        await db.transact(run)
    except _RolledBack as done:
        return done.used
    raise AssertionError("unreachable: run() always raises")


class _RolledBack(Exception):
    """Ends a lookup's transaction without committing what it wrote (the store is shared),
    carrying the indexes its plans read."""

    def __init__(self, used: set[str]) -> None:
        super().__init__()
        self.used = used


def _literal(value: Any) -> str:
    """`value` as an untyped PostgreSQL literal (EXECUTE casts it to its parameter's type)."""
    if value is None:
        return "NULL"
    if isinstance(value, (list, tuple)):
        items = ",".join('"' + str(v).replace('"', '\\"') + '"' for v in value)
        return _quoted("{" + items + "}")
    if isinstance(value, bytes):
        return _quoted("\\x" + value.hex())
    if isinstance(value, dt.datetime):
        return _quoted(value.isoformat())
    return _quoted(str(value))


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _pg_indexes(plan: Any) -> set[str]:
    if isinstance(plan, list):
        return set().union(*(_pg_indexes(p) for p in plan))
    if not isinstance(plan, dict):
        return set()
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for value in plan.values():
        if isinstance(value, (list, dict)):
            found |= _pg_indexes(value)
    return found


def _listing(*conditions: Condition) -> Lookup:
    query = ListQuery(conditions=conditions, order=(("modified_at", True), ("uuid", False)))
    return lambda c: tasks.list_tasks(c, Admin(), query, cluster_id=CLUSTER)


def _closing(task_id: int, attempt: int) -> dict[str, Any]:
    return attempts.close_params(task_id, attempt, ended=NOW, outcome="completed")


LOOKUPS: dict[str, tuple[Lookup, set[str]]] = {
    "claim pages": (
        lambda c: claims.candidates(c, "w1", 10, now=NOW),
        {"ix_job_tasks_status_id", "ix_jobs_fair"},
    ),
    "fair share's claim pages": (
        lambda c: claims.candidates(c, "w1", 10, now=NOW, turns={}),
        {"ix_job_tasks_status_owner_uuid_id", "ix_jobs_fair"},
    ),
    "next retry": (lambda c: claims.next_runnable_at(c, NOW), {"ix_job_tasks_status_id"}),
    "reaper": (lambda c: leases.expired(c, NOW, 100), {"ix_job_tasks_lease_expires_at"}),
    "task token": (lambda c: tokens.task_by_token(c, _digest(101)), {"ix_job_tasks_token_digest"}),
    "canceled task token": (
        lambda c: tokens.canceled_task_by_token(c, _digest(101)),
        {"ix_job_tasks_token_digest"},
    ),
    "children": (
        lambda c: tasks.children_of(c, 7, [_task_uuid(7)]),
        {"ix_job_tasks_created_by"},
    ),
    "listing failed tasks": (
        _listing(Condition(("status",), "=", "failed")),
        {"ix_job_tasks_status_id"},
    ),
    "listing active tasks": (
        _listing(Condition(("status",), "=", "active")),
        {"ix_job_tasks_active_job_id"},
    ),
    "node reservations": (
        lambda c: claims.node_reservations(c, "n1"),
        {"ix_job_tasks_active_job_id"},
    ),
    "placement's per-node counts": (
        lambda c: claims.job_nodes(c, 2),
        {"ix_job_tasks_active_job_id"},
    ),
    "queued jobs count": (jobs_store.count_queued, {"ix_jobs_fair"}),
    # An attempt ends by its key, its task's current attempt (task 101: active, attempt 1).
    "closing an attempt": (
        lambda c: attempts.close_attempt(c, 101, 1, ended=NOW, outcome="completed"),
        {"uq_task_attempts_task_id_attempt"},
    ),
    "closing attempts in a flush": (
        lambda c: flush_sql.send(
            c, flush_sql.Flush(closed=[_closing(101, 1), _closing(201, 1), _closing(3, 2)])
        ),
        {"uq_task_attempts_task_id_attempt"},
    ),
    "a task's attempts": (
        lambda c: attempts.task_attempts_of(c, 3, 100, 0),
        {"uq_task_attempts_task_id_attempt"},
    ),
    "counting a task's attempts": (
        lambda c: attempts.count_task_attempts(c, 3),
        {"uq_task_attempts_task_id_attempt"},
    ),
    "a job's attempts": (
        lambda c: attempts.job_attempts(c, 3, 100, 0),
        {"uq_task_attempts_task_id_attempt"},
    ),
    "workers' running tasks": (
        lambda c: workers.running_tasks(c, ["w1", "w2"]),
        {"ix_job_tasks_active_job_id"},
    ),
}


@pytest.mark.parametrize("name", sorted(LOOKUPS))
async def test_a_lookup_reads_through_its_index(store: Database, name: str) -> None:
    lookup, expected = LOOKUPS[name]
    used = await _indexes_used(store, lookup)
    assert expected <= used, f"{name}: plans read {sorted(used)}"


async def test_a_lookup_leaves_the_shared_store_as_seeded(store: Database) -> None:
    """The closes write; their transaction is rolled back, so every test sees the seeded rows
    (task 101's attempt 1 stays open)."""
    for name in ("closing an attempt", "closing attempts in a flush"):
        await _indexes_used(store, LOOKUPS[name][0])
    async with store.read() as conn:
        ended = await conn.scalar(
            select(task_attempts.c.ended_at).where(
                task_attempts.c.task_id == 101, task_attempts.c.attempt == 1
            )
        )
    assert ended is None


_PARTIAL_TASK_INDEXES = {
    "ix_job_tasks_status_id",
    "ix_job_tasks_status_owner_uuid_id",
    "ix_job_tasks_lease_expires_at",
    "ix_job_tasks_token_digest",
    "ix_job_tasks_created_by",
    "ix_job_tasks_active_job_id",
}


async def test_task_indexes_hold_only_the_rows_their_lookups_find(store: Database) -> None:
    """Every task index a write would otherwise fill with rows no lookup finds is partial,
    on both stores; jobs keep no index the claims' ix_jobs_fair makes redundant."""
    async with store.read() as conn:
        if conn.dialect.name == "postgresql":
            rows = await conn.execute(
                text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"),
                {"t": "job_tasks"},
            )
            job_indexes = await conn.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'")
            )
        else:
            rows = await conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"),
                {"t": "job_tasks"},
            )
            job_indexes = await conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'")
            )
        definitions = {name: str(sql or "") for name, sql in rows}
        job_index_names = {name for (name,) in job_indexes}
    partial = {name for name, sql in definitions.items() if " WHERE " in sql.upper()}
    assert partial == _PARTIAL_TASK_INDEXES
    assert "ix_jobs_queue" not in job_index_names
    assert "ix_jobs_fair" in job_index_names


# Statements the server runs over and over (a cached generic plan may serve them): their
# partial indexes must be proven from the statement's text, not from its parameters.
REPEATED = (
    "claim pages",
    "fair share's claim pages",
    "next retry",
    "reaper",
    "task token",
    "canceled task token",
    "children",
    "workers' running tasks",
    "node reservations",
    "closing an attempt",
    "closing attempts in a flush",
    "a task's attempts",
)


@pytest.mark.parametrize("name", REPEATED)
async def test_a_repeated_lookup_reads_through_its_index_as_a_generic_plan(
    store: Database, database_url: str, name: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite plans each statement with its parameters")
    lookup, expected = LOOKUPS[name]
    used = await _indexes_used(store, lookup, generic=True)
    assert expected <= used, f"{name}: generic plans read {sorted(used)}"
