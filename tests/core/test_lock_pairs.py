"""locks.lock_pairs on both stores (SQLite reads the pairs in one join, PostgreSQL locks the
jobs then the tasks): tasks named in any order come back in (job id, task id) order, one
JobRow per job, with the rows as stored; unknown uuids are left out."""

from __future__ import annotations

import random

from jobtask.store import locks
from jobtask.store.locks import JOB_BY_ID
from jobtask.store.rows import job_row, task_row
from jobtask.store.schema import job_tasks
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import Cluster
from tests.worker_protocol.helpers import job_with_tasks


async def test_pairs_come_in_job_then_task_order_one_job_row_each(cluster: Cluster) -> None:
    db = cluster.services.core.db
    for n in range(3):
        await job_with_tasks(cluster, f"pairs{n}.py", 3)

    async def reverse_uuids(conn: AsyncConnection) -> None:
        # Uuids made in one process sort like ids: renamed so that they sort the other way,
        # an order a read by uuid would follow.
        ids = [i for (i,) in await conn.execute(select(job_tasks.c.id))]
        for i in ids:
            tail = f"{999_999 - i:015d}"
            await conn.execute(
                update(job_tasks).where(job_tasks.c.id == i).values(uuid=f"zzzzz-ot0gb-{tail}")
            )

    await db.transact(reverse_uuids)
    async with db.read() as conn:
        tasks = [task_row(r) for r in await conn.execute(select(job_tasks))]
    named = [t.uuid for t in tasks]
    random.Random(7).shuffle(named)

    async def lock(conn: AsyncConnection) -> list[tuple[int, int]]:
        pairs = await locks.lock_pairs(conn, [*named, "zzzzz-ot0gb-nosuchtask00000"])
        jobs = {
            job.id: job_row((await conn.execute(JOB_BY_ID, {"job_id": job.id})).one())
            for job, _ in pairs
        }
        # Each pair's job is its task's, as stored; one JobRow object per job.
        for job, task in pairs:
            assert task.job_id == job.id
            assert job == jobs[job.id]
        assert len({id(job) for job, _ in pairs}) == len(jobs) == 3
        return [(job.id, task.id) for job, task in pairs]

    order = await db.transact(lock)
    assert order == sorted((t.job_id, t.id) for t in tasks)
    by_id = {t.id: t for t in tasks}
    again = await db.transact(lambda c: locks.lock_pairs(c, named))
    assert [task for _, task in again] == [by_id[i] for _, i in order]
