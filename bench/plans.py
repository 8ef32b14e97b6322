"""The store's non-hot statements at scale, planned with and without its session settings.

    python -m bench.plans [--url SERVER] [--keep DATABASE]
                          [--jobs 2000] [--tasks 200000] [--events 200000] [--runs 5]
                          [--plans]

Not in the default bench run. Creates a scratch database on the server of --url (default
bench.stack.postgres_admin_url(): $JOBTASK_BENCH_POSTGRES_URL...; dropped at the end unless
--keep names it, and then reused when it exists), migrates it, and
writes jobs, tasks in mixed statuses, events, attempts, failures, workers and tokens straight
into it, ANALYZEs, then runs each family of the store's reads and deletes -- listings with
filters, orders and counts, stats, workers, the reaper's read, tokens, blocklist, the change
feed's reads, job deletion, children_of -- through the store's own functions on two engines:
one whose sessions carry jobtask.store.database.SESSION_SETTINGS (as the store's do), one
with JIT off only. Prints the median milliseconds of each (every run in its own transaction,
rolled back) and the ratio; --plans also prints both EXPLAIN ANALYZE plans of each statement
sent.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import statistics
import time
import uuid as uuid_mod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
from jobtask.domain.query import Condition, ListQuery
from jobtask.store import (
    attempts,
    blocklist,
    feed,
    jobs,
    leases,
    locks,
    stats,
    tasks,
    tokens,
    workers,
)
from jobtask.store.database import SESSION_SETTINGS, Database
from jobtask.store.migrate import upgrade
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bench.stack import postgres_admin_url

CLUSTER = "zzzzz"
OWNERS = 20
WORKERS = 50
# A completed task of job 20 (ids), so with an attempt (see seed).
ATTEMPTED_TASK = 201
ATTEMPTED_JOB = 20

Family = Callable[[AsyncConnection], Awaitable[Any]]


@dataclass(frozen=True)
class Reader:
    user_uuid: str
    is_admin: bool


ADMIN = Reader(f"{CLUSTER}-tpzed-000000000000000", True)
OWNER = Reader(f"{CLUSTER}-tpzed-{1:015d}", False)


def job_uuid(n: int) -> str:
    return f"{CLUSTER}-8i9sb-{n:015d}"


def task_uuid(n: int) -> str:
    return f"{CLUSTER}-ot0gb-{n:015d}"


async def seed(conn: asyncpg.Connection, n_jobs: int, n_tasks: int, n_events: int) -> None:
    """Jobs of OWNERS owners; tasks spread over them (every tenth job holds half of them, the
    rest evenly), one in a thousand active and leased (a tenth of those expired), the others
    queued, completed, failed or canceled, every other one created by its job's first task;
    events spread over the jobs; an attempt per
    finished or active task; a failure per failed task; workers; a token
    per owner."""
    await conn.execute(
        """INSERT INTO jobs (uuid, owner_uuid, created_at, modified_at, script, script_version,
             repository, script_parameters, runtime_constraints, status, priority, version,
             identity, state, n_queued, n_completed)
           SELECT 'zzzzz-8i9sb-' || lpad(g::text, 15, '0'),
             'zzzzz-tpzed-' || lpad((g % $2)::text, 15, '0'),
             now() - (g || ' s')::interval, now() - (g || ' s')::interval, 's', 'v', 'r',
             jsonb_build_object('n', g), '{}', (ARRAY['queued','active','completed','failed',
             'canceled'])[1 + g % 5], g % 3, 1, 'i' || g, 'Queued', 10, 10
           FROM generate_series(1, $1) g""",
        n_jobs,
        OWNERS,
    )
    # Task g belongs to job j(g): the first half to every tenth job, the rest to all.
    await conn.execute(
        """WITH t AS (
             SELECT g, CASE WHEN g <= $1 / 2 THEN 10 * (1 + g % ($2 / 10))
                            ELSE 1 + g % $2 END AS j
             FROM generate_series(1, $1) g)
           INSERT INTO job_tasks (uuid, job_id, job_uuid, owner_uuid, created_at, modified_at,
             sequence, parameters, runtime_constraints, status, version,
             created_by_job_task_uuid, worker_id, node_name, lease_id, lease_expires_at,
             token_digest)
           SELECT 'zzzzz-ot0gb-' || lpad(g::text, 15, '0'), j,
             'zzzzz-8i9sb-' || lpad(j::text, 15, '0'),
             'zzzzz-tpzed-' || lpad((j % $3)::text, 15, '0'),
             now() - (g || ' ms')::interval, now() - (g || ' ms')::interval, g % 2,
             CASE WHEN g % 4 = 0 THEN jsonb_build_object('input', g) ELSE '{}' END, '{}',
             CASE WHEN g % 1000 = 1 THEN 'active' ELSE
               (ARRAY['queued','completed','completed','completed','failed','canceled'])
               [1 + g % 6] END,
             1, CASE WHEN g % 2 = 1 THEN 'zzzzz-ot0gb-' || lpad(j::text, 15, '0') END,
             CASE WHEN g % 1000 = 1 THEN 'w' || g % $4 END,
             CASE WHEN g % 1000 = 1 THEN 'n' || g % $4 END,
             CASE WHEN g % 1000 = 1 THEN md5(g::text) END,
             CASE WHEN g % 1000 = 1 THEN now() + ((CASE WHEN g % 10000 = 1 THEN -60 ELSE 60 END)
               || ' s')::interval END,
             CASE WHEN g % 1000 = 1 THEN decode(md5(g::text), 'hex') END
           FROM t ORDER BY g""",
        n_tasks,
        n_jobs,
        OWNERS,
        WORKERS,
    )
    await conn.execute(
        """INSERT INTO events (created_at, job_uuid, task_uuid, type, payload)
           SELECT now() - ((($1 - g) / 100) || ' s')::interval,
             'zzzzz-8i9sb-' || lpad((1 + g % $2)::text, 15, '0'),
             'zzzzz-ot0gb-' || lpad(g::text, 15, '0'), 'task_changed', '{}'
           FROM generate_series(1, $1) g""",
        n_events,
        n_jobs,
    )
    await conn.execute(
        """INSERT INTO task_attempts (task_id, attempt, lease_id, worker_id, node_name,
             started_at, ended_at, outcome)
           SELECT id, 1, 'a' || id, 'w' || id % $1, 'n' || id % $1, now(), now(),
             CASE WHEN status = 'active' THEN NULL ELSE status END
           FROM job_tasks WHERE status IN ('active', 'completed', 'failed')""",
        WORKERS,
    )
    await conn.execute(
        """INSERT INTO task_failures (task_id, worker_id, failed_at)
           SELECT id, 'w' || id % $1, now() FROM job_tasks WHERE status = 'failed'""",
        WORKERS,
    )
    await conn.execute(
        """INSERT INTO workers (worker_id, node_name, last_seen_at, first_seen_at)
           SELECT 'w' || g, 'n' || g, now() - (g || ' s')::interval, now()
           FROM generate_series(0, $1 - 1) g""",
        WORKERS,
    )
    await conn.execute(
        """INSERT INTO users (uuid, is_admin, created_at, modified_at)
           SELECT 'zzzzz-tpzed-' || lpad(g::text, 15, '0'), g = 0, now(), now()
           FROM generate_series(0, $1) g ON CONFLICT DO NOTHING""",
        OWNERS,
    )
    await conn.execute(
        """INSERT INTO api_client_authorizations (uuid, owner_uuid, secret_digest, scopes,
             created_at, modified_at)
           SELECT 'zzzzz-gj3su-' || lpad(g::text, 15, '0'),
             'zzzzz-tpzed-' || lpad((g % $1)::text, 15, '0'),
             decode(md5('t' || g), 'hex') || decode(md5('u' || g), 'hex'), '["all"]',
             now(), now()
           FROM generate_series(1, 1000) g""",
        OWNERS,
    )
    await conn.execute("ANALYZE")


def families(big_job: int, small_job: int) -> dict[str, Family]:
    """The store's non-hot reads and deletes, by name."""
    now = dt.datetime.now(dt.UTC)

    def listing(conditions: tuple[Condition, ...], **kw: Any) -> ListQuery:
        return ListQuery(conditions=conditions, **kw)

    by_modified = (("modified_at", True), ("uuid", False))
    job_cond = (Condition(("job_uuid",), "=", job_uuid(big_job)),)
    small_cond = (Condition(("job_uuid",), "=", job_uuid(small_job)),)
    failed = (Condition(("status",), "=", "failed"),)
    has_input = (Condition(("parameters",), "exists", "input"),)
    owner_cond = (Condition(("owner_uuid",), "=", OWNER.user_uuid),)
    created = (Condition(("created_at",), "<", now - dt.timedelta(seconds=30)),)
    like_uuid = (Condition(("uuid",), "like", f"{CLUSTER}-ot0gb-00000000001%"),)
    seeds = [task_uuid(n) for n in range(big_job, big_job + 40)]
    worker_ids = [f"w{n}" for n in range(WORKERS)]
    some = {task_uuid(n): hashlib.md5(str(n).encode()).hexdigest() for n in range(1, 29_001, 1000)}

    def tasks_list(q: ListQuery, reader: Reader = ADMIN) -> Family:
        return lambda c: tasks.list_tasks(c, reader, q, cluster_id=CLUSTER)

    def jobs_list(q: ListQuery, reader: Reader = ADMIN, queued: bool = False) -> Family:
        return lambda c: jobs.list_jobs(c, reader, q, cluster_id=CLUSTER, queued_only=queued)

    return {
        "ListTasks default (modified_at desc) +count": tasks_list(listing((), order=by_modified)),
        "ListTasks job_uuid= big job +count": tasks_list(listing(job_cond, order=by_modified)),
        "ListTasks job_uuid= small job +count": tasks_list(listing(small_cond, order=by_modified)),
        "ListTasks status=failed +count": tasks_list(listing(failed, order=by_modified)),
        "ListTasks parameters exists +count": tasks_list(listing(has_input, order=by_modified)),
        "ListTasks created_at< order sequence +count": tasks_list(
            listing(created, order=(("sequence", False), ("uuid", False)))
        ),
        "ListTasks uuid like +count": tasks_list(listing(like_uuid, order=by_modified)),
        "ListTasks non-admin owner +count": tasks_list(listing((), order=by_modified), OWNER),
        "ListTasks offset 5000 no count": tasks_list(
            listing((), order=by_modified, offset=5000, count=False)
        ),
        "ListJobs default +count": jobs_list(listing((), order=by_modified)),
        "ListJobs owner= script_parameters exists": jobs_list(
            listing((*owner_cond, Condition(("script_parameters",), "exists", "n")))
        ),
        "ListJobs queued, non-admin": jobs_list(listing((), order=by_modified), OWNER, True),
        "stats.read_stats (GROUP BY tasks, jobs)": lambda c: stats.read_stats(
            c, live_since=now - dt.timedelta(minutes=1)
        ),
        "stats.feed_heads (200 jobs)": lambda c: stats.feed_heads(
            c, [job_uuid(n) for n in range(1, 201)]
        ),
        "jobs.count_queued": jobs.count_queued,
        "workers list+count": lambda c: _both(
            workers.list_workers(c, 100, 0), workers.count_workers(c)
        ),
        "workers.running_tasks (50 workers)": lambda c: workers.running_tasks(c, worker_ids),
        "workers.attempt_counts (50 workers)": lambda c: workers.attempt_counts(c, worker_ids),
        "leases.expired (reaper, 100)": lambda c: leases.expired(c, now, 100),
        "leases.states (29 leases)": lambda c: leases.states(c, some),
        "tokens.list_tokens (admin)": lambda c: tokens.list_tokens(
            c, ADMIN, ListQuery(order=(("created_at", True),)), cluster_id=CLUSTER
        ),
        "tokens.all_tokens": tokens.all_tokens,
        "blocklist.failed_tasks big job": lambda c: blocklist.failed_tasks(c, big_job, "w3"),
        "feed.head + pruned_before": lambda c: _both(feed.head(c), feed.pruned_before(c)),
        "feed.job_head": lambda c: feed.job_head(c, job_uuid(big_job)),
        "feed.read_after (resume, 500)": lambda c: feed.read_after(c, job_uuid(big_job), 0),
        "feed.prune (nothing to prune)": lambda c: feed.prune(
            c, keep_events=10**9, older_than=now - dt.timedelta(days=1)
        ),
        "tasks.children_of big job (40 seeds)": lambda c: tasks.children_of(c, big_job, seeds),
        "tasks.tasks_of_job big job": lambda c: tasks.tasks_of_job(c, big_job),
        "jobs.newest_duplicates (50 identities)": lambda c: jobs.newest_duplicates(
            c, ADMIN, [f"i{n}" for n in range(1, 51)]
        ),
        "jobs.delete_job big job (rolled back)": lambda c: jobs.delete_job(c, big_job),
        "attempts.task_attempts_of + count": lambda c: _both(
            attempts.task_attempts_of(c, ATTEMPTED_TASK, 100, 0),
            attempts.count_task_attempts(c, ATTEMPTED_TASK),
        ),
        "attempts.job_attempts + count": lambda c: _both(
            attempts.job_attempts(c, ATTEMPTED_JOB, 100, 0),
            attempts.count_job_attempts(c, ATTEMPTED_JOB),
        ),
        "leases.renew (29 leases, rolled back)": lambda c: leases.renew(
            c, some, now + dt.timedelta(minutes=10), now
        ),
        "locks.lock_pairs (29 tasks)": lambda c: locks.lock_pairs(c, list(some)),
        "locks.lock_jobs_by_uuid (20 jobs)": lambda c: locks.lock_jobs_by_uuid(
            c, [job_uuid(n) for n in range(1, 2001, 100)]
        ),
    }


async def _both(a: Awaitable[Any], b: Awaitable[Any]) -> None:
    await a
    await b


def engine(url: str, settings: dict[str, str]) -> AsyncEngine:
    u = make_url(url).set(drivername="postgresql+asyncpg")
    return create_async_engine(
        u.render_as_string(hide_password=False),
        pool_size=1,
        connect_args={"server_settings": settings},
    )


async def timed(eng: AsyncEngine, fn: Family, runs: int) -> float:
    """Median milliseconds of `fn`, each run in its own transaction, rolled back."""
    times = []
    for _ in range(runs):
        async with eng.connect() as conn:
            started = time.perf_counter()
            await fn(conn)
            times.append((time.perf_counter() - started) * 1000)
            await conn.rollback()
    return statistics.median(times)


async def sent(eng: AsyncEngine, fn: Family) -> list[tuple[str, Any]]:
    """The statements `fn` sends, with their parameters."""
    out: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        out.append((args[2], args[3]))

    event.listen(eng.sync_engine, "before_cursor_execute", record)
    try:
        async with eng.connect() as conn:
            await fn(conn)
            await conn.rollback()
    finally:
        event.remove(eng.sync_engine, "before_cursor_execute", record)
    return out


async def explain(raw: asyncpg.Connection, settings: dict[str, str], sql: str, params: Any) -> str:
    tr = raw.transaction()
    await tr.start()
    try:
        for name, value in settings.items():
            await raw.execute(f"SET LOCAL {name} = {value}")
        rows = await raw.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *params)
        return "\n".join(r[0] for r in rows)
    finally:
        await tr.rollback()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--url", default=postgres_admin_url())
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plans", action="store_true")
    parser.add_argument("--keep", help="reuse (and keep) this database: seeded if new")
    args = parser.parse_args()

    admin_url = make_url(args.url).set(drivername="postgresql")
    name = args.keep or f"jobtask_plans_{uuid_mod.uuid4().hex[:8]}"
    dsn = admin_url.set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(
        admin_url.set(database="postgres").render_as_string(hide_password=False)
    )
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    if not exists:
        await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        if not exists:
            db = Database(dsn)
            await upgrade(db)
            await db.dispose()
            raw = await asyncpg.connect(dsn)
            await seed(raw, args.jobs, args.tasks, args.events)
        else:
            raw = await asyncpg.connect(dsn)
        counts = await raw.fetchrow(
            """SELECT (SELECT count(*) FROM jobs) j, (SELECT count(*) FROM job_tasks) t,
                 (SELECT count(*) FROM events) e, (SELECT count(*) FROM task_attempts) a"""
        )
        print(
            f"jobs {counts['j']}, tasks {counts['t']}, events {counts['e']}, attempts {counts['a']}"
        )
        big = int(
            await raw.fetchval(
                "SELECT job_id FROM job_tasks GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
            )
        )
        small = int(
            await raw.fetchval("SELECT job_id FROM job_tasks GROUP BY 1 ORDER BY count(*) LIMIT 1")
        )
        with_settings = engine(dsn, SESSION_SETTINGS)
        without = engine(dsn, {"jit": "off"})
        print(f"{'family':48} {'with ms':>9} {'without':>9} {'ratio':>6}")
        for label, fn in families(big, small).items():
            await timed(with_settings, fn, 1)  # warm the cache and the connection
            await timed(without, fn, 1)
            w = await timed(with_settings, fn, args.runs)
            wo = await timed(without, fn, args.runs)
            print(f"{label:48} {w:9.2f} {wo:9.2f} {w / wo:6.2f}", flush=True)
            if args.plans:
                for sql, params in await sent(with_settings, fn):
                    for which, settings in (
                        ("with", SESSION_SETTINGS),
                        ("without", {"jit": "off"}),
                    ):
                        print(f"--- {which}: {' '.join(sql.split())[:300]}")
                        print(await explain(raw, settings, sql, params))
        await with_settings.dispose()
        await without.dispose()
        await raw.close()
    finally:
        if not args.keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
