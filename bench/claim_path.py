"""The claim path alone on PostgreSQL: CPU per claimed task, this process (the manager, as
the server runs it) and the database's backends, with no worker, no gRPC and no
completion.

    python -m bench.claim_path [--tasks N] [--want K]

One active job with N queued tasks (written by one statement, then ANALYZE); one
ClaimManager claims K at a time (a worker's claim of K free slots) until none is left. Run
it in two checkouts one after the other (old, new, old, new...) to compare a change to
the claim's reads and writes: it measures CPU, not wall clock, so a shared machine blurs
it less than the throughput cases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import asyncpg  # type: ignore[import-untyped]  # no stubs published
from jobtask.manager.claims import ClaimManager
from jobtask.manager.context import Settings, WorkerSpec
from jobtask.store.database import Database
from jobtask.store.migrate import upgrade
from sqlalchemy.engine import make_url

from bench.harness import PostgresCpu
from bench.stack import postgres_database

_JOB = """INSERT INTO jobs (uuid, owner_uuid, created_at, modified_at, script, script_version,
  repository, script_parameters, runtime_constraints, status, priority, version, identity,
  state)
VALUES ('zzzzz-8i9sb-000000000000001', 'zzzzz-tpzed-000000000000001', now(), now(), 's', 'v',
  'r', '{}', '{}', 'active', 1, 1, 'i', 'Running') RETURNING id"""
_TASKS = """INSERT INTO job_tasks (uuid, job_id, job_uuid, owner_uuid, created_at, modified_at,
  sequence, parameters, runtime_constraints, status, version)
SELECT 'zzzzz-ot0gb-' || lpad(n::text, 15, '0'), $1, 'zzzzz-8i9sb-000000000000001',
  'zzzzz-tpzed-000000000000001', now(), now(), 0, '{}', '{}', 'queued', 1
FROM generate_series(1, $2) n"""


async def one_job_queued(plain: str, tasks: int) -> Database:
    """A migrated store on the database `plain` names (a postgresql:// URL), holding one
    active job with `tasks` queued tasks (written by one statement, then ANALYZE)."""
    db = Database(plain.replace("postgresql://", "postgresql+asyncpg://", 1))
    await upgrade(db)
    raw = await asyncpg.connect(plain)
    try:
        job_id = await raw.fetchval(_JOB)
        await raw.execute(_TASKS, job_id, tasks)
        await raw.execute("ANALYZE")
    finally:
        await raw.close()
    return db


async def claim_path(tasks: int, want: int) -> dict[str, float]:
    async with postgres_database() as plain:
        db = await one_job_queued(plain, tasks)
        settings = Settings()
        manager = ClaimManager(db, settings)
        caller = settings.system_caller()
        worker = WorkerSpec(worker_id="w1", node_name="n1", free_slots=want)
        got = len(await manager.claim(caller, worker, want))  # the first: plans, pool
        backends = PostgresCpu(make_url(db.url).database or "")
        backends.start()
        started = time.process_time()
        claimed = 0
        while batch := await manager.claim(caller, worker, want):
            claimed += len(batch)
        server = time.process_time() - started - backends.own
        database = backends.stop()
        await db.dispose()
    return {
        "tasks": got + claimed,
        "server_us": round(server * 1e6 / claimed, 1),
        "database_us": round(database * 1e6 / claimed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--want", type=int, default=45)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(claim_path(args.tasks, args.want))))


if __name__ == "__main__":
    main()
