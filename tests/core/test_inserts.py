"""Rows inserted and not read back (jobtask.store.inserts) take the schema's server defaults
for the columns left out: those must be what the database itself writes, on both stores."""

from __future__ import annotations

import datetime as dt

from jobtask.store.database import Database
from jobtask.store.inserts import server_defaults
from jobtask.store.migrate import upgrade
from jobtask.store.schema import job_tasks, jobs
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection


async def test_the_defaults_are_what_the_database_writes(database_url: str) -> None:
    db = Database(database_url)
    await upgrade(db)
    now = dt.datetime.now(dt.UTC)
    job = {
        "uuid": "zzzzz-8i9sb-000000000000001",
        "owner_uuid": "zzzzz-tpzed-000000000000001",
        "created_at": now,
        "modified_at": now,
        "identity": "i",
        "script": "s",
        "script_parameters": {},
        "script_version": "v",
        "runtime_constraints": {},
        "status": "queued",
        "state": "Queued",
    }
    task = {
        "uuid": "zzzzz-ot0gb-000000000000001",
        "job_uuid": job["uuid"],
        "owner_uuid": job["owner_uuid"],
        "created_at": now,
        "modified_at": now,
        "parameters": {},
        "runtime_constraints": {},
        "status": "queued",
    }

    async def write(conn: AsyncConnection) -> tuple[dict[str, object], dict[str, object]]:
        job_id = (await conn.execute(insert(jobs).values(job).returning(jobs.c.id))).scalar_one()
        await conn.execute(insert(job_tasks).values({**task, "job_id": job_id}))
        job_row = (await conn.execute(select(jobs))).one()._asdict()
        task_row = (await conn.execute(select(job_tasks))).one()._asdict()
        return job_row, task_row

    try:
        job_row, task_row = await db.transact(write)
    finally:
        await db.dispose()
    for table, given, written in ((jobs, job, job_row), (job_tasks, task, task_row)):
        defaults = server_defaults(table)
        for name, value in written.items():
            if name not in given and name not in ("id", "job_id"):
                assert defaults[name] == value and type(defaults[name]) is type(value), name
