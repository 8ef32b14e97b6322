"""SQLite's kept rows (jobtask.store.row_cache): a report group's completion takes the job
and task rows its claim wrote from memory -- and only while they are the stored rows. Each
way the stored rows can change under them has a test here that fails if that way's
invalidation is taken out: another write transaction of the process (a cancel), another
process writing the file, a rollback, a migration's connection, an unusual end inside a
report group. After every step, each kept row equals the stored row, field by field and
type by type (`kept_rows_are_stored`)."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from jobtask.domain.errors import FailedPrecondition
from jobtask.store import feed, locks, row_cache
from jobtask.store.database import Database, SQLiteDatabase
from jobtask.store.rows import JobRow, TaskRow, job_from_json, job_row, task_row
from jobtask.store.schema import events, job_tasks, jobs
from jobtask.store.task_writes import TaskWrites
from jobtask.v1 import job_service_pb2 as js
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import Cluster, running_cluster
from tests.core.helpers import create_job, task_status
from tests.worker_protocol.helpers import Run, claim_as, claim_many, job_with_tasks


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(f"sqlite:///{tmp_path / 'jobtask.sqlite3'}", lease_ttl=30.0) as c:
        yield c


def _db(cluster: Cluster) -> SQLiteDatabase:
    db = cluster.services.core.db
    assert isinstance(db, SQLiteDatabase)
    return db


def _same(kept: JobRow | TaskRow, stored: JobRow | TaskRow) -> None:
    assert kept == stored
    assert [type(v) for v in vars(kept).values()] == [type(v) for v in vars(stored).values()]


async def kept_rows_are_stored(db: SQLiteDatabase) -> int:
    """Every kept row, if the cache is valid for the next write transaction, is the stored
    row; how many were compared."""

    async def check(conn: AsyncConnection) -> int:
        account = row_cache.tracked(conn)
        assert account is not None
        if not (db.rows.tasks or db.rows.jobs) or not account.valid():
            return 0
        for uuid, task in db.rows.tasks.items():
            found = await conn.execute(select(job_tasks).where(job_tasks.c.uuid == uuid))
            _same(task, task_row(found.one()))
        for job_id, job in db.rows.jobs.items():
            found = await conn.execute(select(jobs).where(jobs.c.id == job_id))
            _same(job, job_row(found.one()))
        return len(db.rows.tasks) + len(db.rows.jobs)

    return await db.transact(check)


async def _last_job_event(db: Database, job_uuid: str) -> JobRow:
    async with db.read() as conn:
        found = await conn.execute(
            select(events.c.payload)
            .where(events.c.job_uuid == job_uuid, events.c.type == feed.JOB_CHANGED)
            .order_by(events.c.seq.desc())
            .limit(1)
        )
        return job_from_json(found.scalar_one())


async def _stored_job(db: Database, job_uuid: str) -> JobRow:
    async with db.read() as conn:
        return job_row((await conn.execute(select(jobs).where(jobs.c.uuid == job_uuid))).one())


async def test_a_completion_takes_its_claims_rows_which_are_the_stored_ones(lite: Cluster) -> None:
    """Claims, progress, completions of a job with several tasks and of one-task jobs: the
    completions' groups find their rows kept (hits), and every kept row is the stored row."""
    db = _db(lite)
    fan = await job_with_tasks(lite, "fan.py", 3)
    for n in range(3):
        await lite.jobs.CreateJob(create_job(script=f"one{n}.py"))
    # The submissions' jobs are kept as inserted, for their claims.
    assert await kept_rows_are_stored(db) >= 3
    hits = db.rows.hits
    first = await claim_many(lite, "w1", 3)
    assert len(first) == 3
    assert await kept_rows_are_stored(db) > 0
    hits = db.rows.hits
    runs = [Run(lite, a) for a in first]
    for i, run in enumerate(runs):
        await run.acked(await run.send(progress=0.5, output=f"part {i}"))
        assert await kept_rows_are_stored(db) > 0
    for i, run in enumerate(runs):
        final = await run.exit(progress=1.0, success=True, output=f"out {i}")
        assert final.task.status == task_status("completed")
        await kept_rows_are_stored(db)
    assert db.rows.hits > hits
    rest = await claim_many(lite, "w2", 10)
    assert len(rest) == 4
    await kept_rows_are_stored(db)
    for a in rest:
        final = await Run(lite, a).exit(progress=1.0, success=True, output=a.task.uuid)
        assert final.task.status == task_status("completed")
        await kept_rows_are_stored(db)
    job = await _stored_job(db, fan)
    assert (job.n_completed, job.n_active, job.n_queued) == (4, 0, 0)
    # The last job_changed event of each job is its stored row.
    for uuid in {fan, *(a.task.job_uuid for a in first + rest)}:
        assert await _last_job_event(db, uuid) == _without_private(await _stored_job(db, uuid))


def _without_private(job: JobRow) -> JobRow:
    values = dict(vars(job))
    values.update(submit_digest=None, identity="")
    return JobRow(**values)


async def test_a_cancel_between_claim_and_completion_is_seen(lite: Cluster) -> None:
    """The cancel is another write transaction of the process: every kept row is dropped at
    its commit, so the exit finds the task canceled (a kept row would say active and the
    exit would complete it), and the job's counts stay exact."""
    db = _db(lite)
    job = await job_with_tasks(lite, "cancel.py", 1)
    a = await claim_as(lite, "w1")
    assert a is not None
    assert a.task.uuid in db.rows.tasks
    run = Run(lite, a)
    await run.acked(await run.send(progress=0.3))
    await lite.jobs.CancelJob(js.CancelJobRequest(uuid=job))
    assert a.task.uuid not in db.rows.tasks
    await kept_rows_are_stored(db)
    final = await run.exit(signal=15)
    assert final.task.status == task_status("canceled")
    stored = await _stored_job(db, job)
    assert (stored.n_canceled, stored.n_active, stored.n_completed) == (2, 0, 0)
    assert await _last_job_event(db, job) == _without_private(stored)


# Another process writes the file: a job's priority, which no write of the completion sets.
_OTHER_PROCESS = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("UPDATE jobs SET priority = 7, version = version + 1 WHERE uuid = ?", (sys.argv[2],))
conn.commit()
conn.close()
"""


async def test_another_process_writing_the_file_is_seen(lite: Cluster, tmp_path: Path) -> None:
    """data_version: the completion reads the job again, so its move and its event carry the
    other process's priority (a kept row would write the event with the old one)."""
    db = _db(lite)
    job = await lite.jobs.CreateJob(create_job(script="other.py"))
    a = await claim_as(lite, "w1")
    assert a is not None and a.task.job_uuid == job.uuid
    assert db.rows.jobs
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OTHER_PROCESS, str(tmp_path / "jobtask.sqlite3"), job.uuid
    )
    assert await proc.wait() == 0
    misses = db.rows.misses
    final = await Run(lite, a).exit(progress=1.0, success=True)
    assert final.task.status == task_status("completed")
    assert db.rows.misses > misses
    stored = await _stored_job(db, job.uuid)
    assert stored.priority == 7 and stored.n_completed == 1
    assert await _last_job_event(db, job.uuid) == _without_private(stored)
    await kept_rows_are_stored(db)


async def _one_claimed(lite: Cluster, script: str) -> tuple[SQLiteDatabase, Any]:
    """A one-task job, its task claimed: the store and the assignment."""
    await lite.jobs.CreateJob(create_job(script=script))
    a = await claim_as(lite, "w1")
    assert a is not None
    return _db(lite), a


async def _write_output(conn: AsyncConnection, task_uuid: str, user_uuid: str, output: str) -> None:
    """The task's output written through a TaskWrites, flushed (the claim's and the report
    group's way of writing a task)."""
    [(job, task)] = await locks.lock_pairs(conn, [task_uuid])
    writes = TaskWrites()
    changes: dict[str, Any] = {"output": output}
    writes.write_task(
        job, task, changes, now=task.modified_at, user_uuid=user_uuid, client_uuid=None
    )
    await writes.flush(conn)


async def test_a_rolled_back_write_is_not_kept(lite: Cluster) -> None:
    """A transaction that wrote a task through a TaskWrites and then failed keeps none of it
    (its rows are kept only once it committed): the completion writes the stored row."""
    db, a = await _one_claimed(lite, "rollback.py")
    user = lite.services.core.settings.system_user

    async def write_then_fail(conn: AsyncConnection) -> None:
        await _write_output(conn, a.task.uuid, user, "rolled back")
        raise FailedPrecondition("and then it failed")

    with pytest.raises(FailedPrecondition):
        await db.transact(write_then_fail)
    assert all(t.output != "rolled back" for t in db.rows.tasks.values())
    await kept_rows_are_stored(db)
    final = await Run(lite, a).exit(success=True, progress=1.0)
    assert final.task.status == task_status("completed")
    assert final.task.output == ""


async def test_a_migrations_connection_drops_the_kept_rows(lite: Cluster) -> None:
    """ddl(): what it changes is not accounted for."""
    db = _db(lite)
    job = await lite.jobs.CreateJob(create_job(script="ddl.py"))
    a = await claim_as(lite, "w1")
    assert a is not None and db.rows.jobs
    async with db.ddl() as conn:
        await conn.execute(update(jobs).where(jobs.c.uuid == job.uuid).values(priority=5))
        await conn.commit()
    assert not db.rows.jobs and not db.rows.tasks
    await Run(lite, a).exit(success=True, progress=1.0)
    stored = await _stored_job(db, job.uuid)
    assert stored.priority == 5
    assert await _last_job_event(db, job.uuid) == _without_private(stored)


async def test_an_unusual_end_in_a_report_group_drops_the_kept_rows(lite: Cluster) -> None:
    """A failed exit ends its attempt with writes of its own (not a TaskWrites'), in the
    report group's transaction: its changes are not all known, nothing of it is kept, and
    the task's retry runs from its stored row."""
    db = _db(lite)
    await lite.jobs.CreateJob(create_job(script="fails.py"))
    a = await claim_as(lite, "w1")
    assert a is not None
    failed = await Run(lite, a).exit(exit_code=1)
    assert failed.task.status in (task_status("queued"), task_status("soft-failed"))
    assert a.task.uuid not in db.rows.tasks
    await kept_rows_are_stored(db)
    again = await claim_as(lite, "w1")
    assert again is not None and again.task.uuid == a.task.uuid
    assert await kept_rows_are_stored(db) > 0
    final = await Run(lite, again).exit(success=True, progress=1.0)
    assert final.task.status == task_status("completed")
    assert final.task.attempt == 2


async def test_a_rolled_back_savepoint_drops_the_kept_rows(lite: Cluster) -> None:
    """A savepoint rolled back undoes changes already counted: nothing of its transaction
    is kept, though the changes still counted match what its flush noted."""
    db, a = await _one_claimed(lite, "savepoint.py")
    user = lite.services.core.settings.system_user

    async def undone(conn: AsyncConnection) -> None:
        sync = conn.sync_connection  # (InlineConnection's: its statements run inline)
        assert sync is not None
        nested = sync.begin_nested()
        await _write_output(conn, a.task.uuid, user, "undone")
        nested.rollback()

    await db.transact(undone)
    assert all(t.output != "undone" for t in db.rows.tasks.values())
    await kept_rows_are_stored(db)


async def test_a_submitted_job_with_json_values_is_kept_as_it_reads_back(lite: Cluster) -> None:
    """A submitted job's row is kept with its JSON columns as reading them back gives them
    (compared by repr: 1 and 1.0 differ), and its claim takes it from memory."""
    db = _db(lite)
    request = create_job(script="params.py")
    request.job.script_parameters.update({"x": 1, "y": "z", "deep": {"l": [1.5, None, True]}})
    request.job.runtime_constraints.max_tasks_per_node = 2
    job = await lite.jobs.CreateJob(request)
    stored = await _stored_job(db, job.uuid)
    kept = db.rows.jobs[stored.id]
    for name in ("script_parameters", "runtime_constraints"):
        assert repr(getattr(kept, name)) == repr(getattr(stored, name))
    await kept_rows_are_stored(db)
    hits = db.rows.hits
    a = await claim_as(lite, "w1")
    assert a is not None and a.task.job_uuid == job.uuid
    assert db.rows.hits > hits  # its job's row, kept by its submission
    assert await kept_rows_are_stored(db) > 0


async def test_a_kept_submission_holds_what_a_read_gives_not_what_was_given(
    lite: Cluster,
) -> None:
    """row_cache.as_read on values the JSON codec changes (an int key, a tuple), against
    the row read back once those values are stored: the same, type for type."""
    db = _db(lite)
    job = await lite.jobs.CreateJob(create_job(script="odd.py"))
    stored = await _stored_job(db, job.uuid)
    odd: dict[Any, Any] = {1: (1, 2), "f": 2.0}

    async def write(conn: AsyncConnection) -> None:
        await conn.execute(update(jobs).where(jobs.c.id == stored.id).values(script_parameters=odd))

    await db.transact(write)
    given = dataclasses.replace(stored, script_parameters=odd)
    read = await _stored_job(db, job.uuid)
    assert read.script_parameters == {"1": [1, 2], "f": 2.0}
    kept = row_cache.as_read(given)
    assert repr(kept.script_parameters) == repr(read.script_parameters)
    assert repr(given.script_parameters) != repr(read.script_parameters)


def test_trim_keeps_the_newest_rows_in_their_order() -> None:
    # Rows go in oldest first; after any run of inserts and drops, trimming keeps the
    # last `limit` still there, in order (the kept rows' age is their dict order).
    rows: dict[int, str] = {n: str(n) for n in range(50)}
    for n in range(0, 50, 3):
        del rows[n]
    rows[6] = "again"  # dropped earlier: now the newest
    rows[7] = "kept"  # still there: keeps its place
    row_cache.trim(rows, 20)
    order = [n for n in range(50) if n % 3] + [6]
    assert list(rows) == order[-20:]
    assert (rows[6], rows[47]) == ("again", "47")
    row_cache.trim(rows, 20)
    assert len(rows) == 20
    row_cache.trim(rows, 0)
    assert rows == {}


async def a_long_log_is_not_kept(
    cluster: Cluster, a: Any, rows: Mapping[str, Any], misses: Callable[[], int]
) -> None:
    """A kept task row (`rows`: its cache's, by uuid) holds its log tail (up to 64 KiB on an
    active task): past KEEP_TEXT it is dropped (10,000 such rows would hold 640 MB), and the
    next report reads the row (`misses`: its cache's count grows). Both stores' caches."""
    assert a.task.uuid in rows
    run = Run(cluster, a)
    await run.acked(await run.send(log="x" * (row_cache.KEEP_TEXT + 1)))
    assert a.task.uuid not in rows
    before = misses()
    await run.acked(await run.send(progress=0.5))
    assert misses() > before
    final = await run.exit(progress=1.0, success=True)
    assert final.task.status == task_status("completed")


async def test_a_task_row_with_a_long_log_is_not_kept(lite: Cluster) -> None:
    db, a = await _one_claimed(lite, "long.py")
    await a_long_log_is_not_kept(lite, a, db.rows.tasks, lambda: db.rows.misses)
    await kept_rows_are_stored(db)
