"""PostgreSQL's kept task rows (jobtask.store.kept_tasks): a report group's lock takes the
task rows its claim committed from memory -- and only while their version and lease columns
say they are the stored rows. Each way a stored row can change under a kept one has a test
that fails if the check for it is taken out: a lease renewed (no version bump), another
writer's versioned write (another process, through the store's own TaskWrites), a rollback;
and one that fails if a writer of job_tasks is added to the store without a look at the
rule the cache stands on (a scan of the store's modules for `update(job_tasks)`: a writer
written as raw text would pass it). Where a test compares them, a kept row whose checked
columns are the stored row's equals it field by field and type by type."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jobtask.store import locks
from jobtask.store.database import Database, PostgresDatabase
from jobtask.store.rows import JobRow, TaskRow, job_row, task_row
from jobtask.store.schema import job_tasks, jobs
from jobtask.store.task_writes import TaskWrites
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import Cluster, running_cluster
from tests.core.helpers import task_status
from tests.core.test_row_cache import a_long_log_is_not_kept
from tests.worker_protocol.helpers import Run, claim_many, job_with_tasks

pytestmark = pytest.mark.postgres

STORE = Path(__file__).resolve().parents[2] / "services" / "jobtask" / "store"


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Cluster]:
    async with running_cluster(postgres_url, lease_ttl=30.0) as c:
        yield c


def _db(cluster: Cluster) -> PostgresDatabase:
    db = cluster.services.core.db
    assert isinstance(db, PostgresDatabase)
    return db


async def _stored(db: Database, uuid: str) -> TaskRow:
    async with db.read() as conn:
        return task_row(
            (await conn.execute(select(job_tasks).where(job_tasks.c.uuid == uuid))).one()
        )


async def kept_rows_are_stored(db: PostgresDatabase) -> int:
    """Every kept row whose version and lease columns are the stored row's is the stored
    row; how many were."""
    same = 0
    for uuid, kept in db.kept_tasks.rows.items():
        stored = await _stored(db, uuid)
        if (stored.version, stored.lease_id, stored.lease_expires_at) != (
            kept.version,
            kept.lease_id,
            kept.lease_expires_at,
        ):
            continue
        assert kept == stored
        assert [type(v) for v in vars(kept).values()] == [type(v) for v in vars(stored).values()]
        same += 1
    return same


async def test_a_report_group_takes_its_claims_rows_which_are_the_stored_ones(pg: Cluster) -> None:
    db = _db(pg)
    await job_with_tasks(pg, "fan.py", 3)
    claimed = await claim_many(pg, "w1", 4)
    assert len(claimed) == 4
    # The claim's rows, kept at its commit.
    assert {a.task.uuid for a in claimed} <= db.kept_tasks.rows.keys()
    assert await kept_rows_are_stored(db) == 4
    hits = db.kept_tasks.hits
    runs = [Run(pg, a) for a in claimed]
    for i, run in enumerate(runs):
        await run.acked(await run.send(progress=0.5, output=f"part {i}"))
    assert db.kept_tasks.hits > hits
    assert await kept_rows_are_stored(db) == 4
    for i, run in enumerate(runs):
        final = await run.exit(progress=1.0, success=True, output=f"out {i}")
        assert final.task.status == task_status("completed")
        assert final.task.output == f"out {i}"
    # Finished tasks are dropped.
    assert not {a.task.uuid for a in claimed} & db.kept_tasks.rows.keys()


async def test_a_groups_lock_gives_each_task_its_own_jobs_whole_row(pg: Cluster) -> None:
    """The kept path's lock reads each job's columns once, on its first task's row
    (locks._LOCK_JOBS_THEN_CHECKED): every task of a group spanning two jobs still gets
    its own job's row, whole, as stored."""
    db = _db(pg)
    for name in ("first.py", "second.py"):
        await job_with_tasks(pg, name, 2)
    claimed = await claim_many(pg, "w1", 6)
    assert len({a.job.uuid for a in claimed}) == 2
    hits = db.kept_tasks.hits

    async def lock(conn: AsyncConnection) -> tuple[list[tuple[JobRow, TaskRow]], list[JobRow]]:
        pairs = await locks.lock_pairs(conn, [a.task.uuid for a in claimed])
        stored = [job_row(row) for row in await conn.execute(select(jobs))]
        return pairs, stored

    pairs, stored = await db.transact(lock)
    assert db.kept_tasks.hits == hits + 1
    by_id = {job.id: job for job in stored}
    assert sorted(task.uuid for _, task in pairs) == sorted(a.task.uuid for a in claimed)
    for job, task in pairs:
        assert job == by_id[task.job_id]


async def test_a_renewed_lease_is_seen(pg: Cluster) -> None:
    """A renewal writes lease_expires_at without a new version: the lock sees a lease end
    that is not the kept row's and reads the row whole, so the row the report group keeps
    is the stored one (a kept row would bring back the old end, and keep it at the next
    version, where the version check alone would take it for the stored row)."""
    db = _db(pg)
    await job_with_tasks(pg, "renew.py", 0)
    [a] = await claim_many(pg, "w1", 1)
    kept = db.kept_tasks.rows[a.task.uuid]
    task, _ = await pg.services.core.claims.renew(a.task.uuid, a.lease.lease_id)
    assert task.lease_expires_at != kept.lease_expires_at
    misses = db.kept_tasks.misses
    run = Run(pg, a)
    await run.acked(await run.send(progress=0.25))
    assert db.kept_tasks.misses > misses
    stored = await _stored(db, a.task.uuid)
    assert stored.lease_expires_at is not None and task.lease_expires_at is not None
    assert stored.lease_expires_at >= task.lease_expires_at
    assert db.kept_tasks.rows[a.task.uuid] == stored
    await run.exit(progress=1.0, success=True)


async def _write_output(conn: AsyncConnection, task_uuid: str, output: str) -> None:
    """The task's output written through a TaskWrites, flushed, as another process's claim
    or report group writes a task (a new version)."""
    [(job, task)] = await locks.lock_pairs(conn, [task_uuid])
    writes = TaskWrites()
    writes.write_task(
        job, task, {"output": output}, now=task.modified_at, user_uuid="other", client_uuid=None
    )
    await writes.flush(conn)


async def test_another_processes_write_is_seen(pg: Cluster, postgres_url: str) -> None:
    """Another Database (another process: a replica) writes the task's output: its version
    moves on, the lock reads the row whole, and the completion keeps the other write."""
    db = _db(pg)
    await job_with_tasks(pg, "other.py", 0)
    [a] = await claim_many(pg, "w1", 1)
    other = Database(postgres_url)
    try:
        await other.transact(lambda conn: _write_output(conn, a.task.uuid, "theirs"))
    finally:
        await other.dispose()
    misses = db.kept_tasks.misses
    run = Run(pg, a)
    await run.acked(await run.send(progress=0.5))
    assert db.kept_tasks.misses > misses
    stored = await _stored(db, a.task.uuid)
    assert stored.output == "theirs"
    assert await kept_rows_are_stored(db) == 1
    final = await run.exit(success=True)
    assert final.task.output == "theirs"


async def test_a_row_with_a_long_log_is_not_kept(pg: Cluster) -> None:
    db = _db(pg)
    await job_with_tasks(pg, "long.py", 0)
    [a] = await claim_many(pg, "w1", 1)
    await a_long_log_is_not_kept(pg, a, db.kept_tasks.rows, lambda: db.kept_tasks.misses)


class _Undone(Exception):
    pass


async def test_a_rolled_back_write_is_not_kept(pg: Cluster) -> None:
    """A write transaction that flushed a task's row and then failed keeps nothing: the kept
    row is still the claim's, which is still the stored row."""
    db = _db(pg)
    await job_with_tasks(pg, "rollback.py", 0)
    [a] = await claim_many(pg, "w1", 1)
    before = db.kept_tasks.rows[a.task.uuid]

    async def written_then_undone(conn: AsyncConnection) -> None:
        await _write_output(conn, a.task.uuid, "undone")
        raise _Undone

    with pytest.raises(_Undone):
        await db.transact(written_then_undone)
    assert db.kept_tasks.rows[a.task.uuid] == before == await _stored(db, a.task.uuid)
    final = await Run(pg, a).exit(success=True)
    assert final.task.output == ""


# The store's writers of job_tasks (update(job_tasks) in its modules), each either bumping
# `version` (TaskWrites' flush writes it with every change; write_tasks_of_job sets it) or
# writing lease columns only (kept_tasks, rule 2). A new one fails this test until it is
# added here: that is the moment to check that it keeps the rule. (flush_sql's own UPDATE
# texts write what a TaskWrites holds, whose every task write sets the version.)
_WRITERS = {"attempts.py": 1, "leases.py": 2, "task_writes.py": 1}
_LEASE_ONLY = re.compile(r"\.values\(\s*(lease_\w+|token_digest)=")


def test_every_writer_of_job_tasks_is_known() -> None:
    found: dict[str, int] = {}
    for path in sorted(STORE.glob("*.py")):
        source = path.read_text()
        n = source.count("update(job_tasks)")
        if n:
            found[path.name] = n
    assert found == _WRITERS
    # The unversioned ones write lease columns only.
    for name in ("attempts.py", "leases.py"):
        source = (STORE / name).read_text()
        for block in source.split("update(job_tasks)")[1:]:
            values = block[block.index(".values(") :].split(")", 1)[0]
            assert _LEASE_ONLY.search(block[: block.index(".values(") + len(values) + 1])
            assert set(re.findall(r"(\w+)=", values)) <= {
                "lease_id",
                "lease_expires_at",
                "token_digest",
            }, values
    # The versioned one sets the version.
    source = (STORE / "task_writes.py").read_text()
    block = source.split("update(job_tasks)")[1].split(".returning(")[0]
    assert "version=job_tasks.c.version + 1" in block
