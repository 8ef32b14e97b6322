"""PostgreSQL's guarded claim (jobtask.manager.claims.ClaimManager._claim_guarded): the
claim's writes are one statement that locks the jobs, then the tasks, and writes only if
what the claim read still holds -- including that every task is still runnable once the
locks are held (migration 0025's jobtask_unrunnable, which reads with a snapshot of its own).
Otherwise the claim's transaction chooses again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest
from jobtask.domain.reports import Batch, Report
from jobtask.manager.context import WorkerSpec, utcnow
from jobtask.manager.reports import Submission
from jobtask.manager.tasks import Claim
from jobtask.store import claims as queries
from jobtask.v1 import task_service_pb2
from sqlalchemy import text

from tests.conftest import Cluster
from tests.core.helpers import create_job, get_job, job_status, task
from tests.core.raw_rows import connect, insert_tasks, lock_waits, task_uuid
from tests.polling import eventually


def _skip_sqlite(cluster: Cluster) -> None:
    if cluster.services.core.db.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite's claims are transactions under its one writer")


def _done() -> Batch:
    batch = Batch()
    batch.add(Report(seq=1, progress=1.0, success=True, output="", exit_code=0))
    return batch


async def _job_past_its_seed(cluster: Cluster, script: str, **fields: Any) -> str:
    """A job whose seed task (sequence 0) was claimed and completed: the job is active."""
    core = cluster.services.core
    system = core.settings.system_caller()
    job = await cluster.jobs.CreateJob(create_job(script=script, **fields))
    (claim,) = await core.claims.claim(system, WorkerSpec(worker_id="seed", node_name="n0"), 1)
    await core.runs.reports.apply_many(
        [Submission(system, claim.task.uuid, claim.lease_id, _done())]
    )
    return str(job.uuid)


async def _create(cluster: Cluster, job_uuid: str, sequence: int, **fields: Any) -> str:
    request = task_service_pb2.CreateTaskRequest(
        job_task=task(job_uuid=job_uuid, sequence=sequence, **fields)
    )
    return str((await cluster.tasks.CreateTask(request)).uuid)


async def test_a_plain_claim_is_one_guarded_statement(cluster: Cluster) -> None:
    """Tasks without limits of an active job and of a queued one: served by the guarded
    path, the queued job moved to active by the same statement."""
    _skip_sqlite(cluster)
    core = cluster.services.core
    system = core.settings.system_caller()
    active = await _job_past_its_seed(cluster, "plain.py")
    children = [await _create(cluster, active, 1) for _ in range(3)]
    queued = (await cluster.jobs.CreateJob(create_job(script="queued.py"))).uuid
    before = core.claims.guarded, core.claims.unguarded
    worker = WorkerSpec(worker_id="w", node_name="n1", free_slots=10)
    claims = await core.claims.claim(system, worker, 10)
    assert (core.claims.guarded, core.claims.unguarded) == (before[0] + 1, before[1])
    assert sorted(c.task.uuid for c in claims if c.job.uuid == active) == sorted(children)
    (seed,) = [c for c in claims if c.job.uuid == queued]
    # The moved job as the claim left it, and as the store has it.
    assert seed.job.status == "active" and seed.job.n_active == 1 and seed.job.n_queued == 0
    job = await get_job(cluster, queued)
    assert job.status == job_status("active")
    assert (job.tasks_summary.running, job.tasks_summary.todo) == (1, 0)


async def test_a_claim_of_a_task_with_limits_is_the_transactions(cluster: Cluster) -> None:
    _skip_sqlite(cluster)
    core = cluster.services.core
    system = core.settings.system_caller()
    await cluster.jobs.CreateJob(
        create_job(script="limits.py", runtime_constraints={"max_tasks_per_node": 5})
    )
    before = core.claims.unguarded
    claims = await core.claims.claim(system, WorkerSpec(worker_id="w", node_name="n1"), 1)
    assert len(claims) == 1 and core.claims.unguarded == before + 1


async def test_a_lower_sequence_created_while_the_claim_waited_is_seen(cluster: Cluster) -> None:
    """A task of sequence 1 created (and committed) under the job's lock while the guarded
    statement waited for that lock: the statement read the database as it was when it began,
    but its runnable check reads after the locks, so the sequence-2 candidate is not
    started; the transaction then takes the new task, runnable before it."""
    _skip_sqlite(cluster)
    core = cluster.services.core
    system = core.settings.system_caller()
    job_uuid = await _job_past_its_seed(cluster, "later.py")
    # A task left running keeps the job active: the claim moves no job (a moved job's
    # counts are checked too, and the creation below shifts them).
    running = await _create(cluster, job_uuid, 2)
    later = await _create(cluster, job_uuid, 2)
    worker = WorkerSpec(worker_id="w", node_name="n1")
    (first,) = await core.claims.claim(system, worker, 1)
    assert first.task.uuid == running and first.job.status == "active"
    earlier = task_uuid(7)
    claim, fell_back = await _claim_as_a_task_is_created(cluster, job_uuid, worker, earlier, 1)
    assert claim.task.uuid == earlier, (claim.task.uuid, later)
    assert fell_back


async def test_the_function_agrees_with_the_claims_own_test(cluster: Cluster) -> None:
    """jobtask_unrunnable counts exactly the queued tasks of an active job that
    runnable_tasks leaves out: an earlier sequence not completed, a creator not completed."""
    _skip_sqlite(cluster)
    core = cluster.services.core
    system = core.settings.system_caller()
    job_uuid = await _job_past_its_seed(cluster, "agree.py")
    first = await _create(cluster, job_uuid, 1)
    await _create(cluster, job_uuid, 2)
    await _create(cluster, job_uuid, 1)
    # A creator still running (claimed, not completed), with a child of its own.
    (running,) = await core.claims.claim(system, WorkerSpec(worker_id="w", node_name="n1"), 1)
    assert running.task.uuid == first
    child = task_service_pb2.CreateTaskRequest(
        job_task=task(job_uuid=job_uuid, sequence=1, created_by_job_task_uuid=first)
    )
    await cluster.tasks.CreateTask(child)
    async with core.db.read() as conn:
        ids = [
            i
            for (i,) in await conn.execute(
                text(
                    "SELECT t.id FROM job_tasks t JOIN jobs j ON j.id = t.job_id"
                    " WHERE j.uuid = :u AND t.status = 'queued' ORDER BY t.id"
                ),
                {"u": job_uuid},
            )
        ]
        assert len(ids) == 3
        runnable = {
            row[queries.CANDIDATE_ID]
            for row in await queries.candidates(conn, "w", 100, now=utcnow())
        }
        for task_id in ids:
            (unrunnable,) = (
                await conn.execute(
                    text("SELECT jobtask_unrunnable(ARRAY[:i]::bigint[], 0)"), {"i": task_id}
                )
            ).one()
            assert unrunnable == (0 if task_id in runnable else 1), (task_id, runnable)
    # Both kinds are among them: one runnable (sequence 1), two not (sequence 2; a child).
    assert len([i for i in ids if i in runnable]) == 1


async def test_a_moved_jobs_counts_written_under_its_lock_are_kept(cluster: Cluster) -> None:
    """A claim that moves its job (queued -> active) writes the job's row whole, its
    counts as values: a task created while the guarded statement waited for the job's lock
    (a later sequence: the claim's task stays runnable) shifted those counts, so the guard
    refuses, and the transaction writes them from the row it locked."""
    _skip_sqlite(cluster)
    job_uuid = (await cluster.jobs.CreateJob(create_job(script="moved.py"))).uuid
    worker = WorkerSpec(worker_id="w", node_name="n1")
    claim, fell_back = await _claim_as_a_task_is_created(cluster, job_uuid, worker, task_uuid(8), 5)
    assert fell_back
    assert claim.job.status == "active"
    summary = (await get_job(cluster, job_uuid)).tasks_summary
    assert (summary.running, summary.todo) == (1, 1)


async def _claim_as_a_task_is_created(
    cluster: Cluster, job_uuid: str, worker: WorkerSpec, uuid: str, sequence: int
) -> tuple[Claim, bool]:
    """One claim of one task, during which the task `uuid` of `sequence` is created and
    counted under the job's lock (see _claim_while); the claim, and whether the guarded
    path left it to the transaction."""

    async def create(holder: asyncpg.Connection, job_id: int) -> None:
        await insert_tasks(holder, job_id, [uuid], sequence=sequence)
        await holder.execute("UPDATE jobs SET n_queued = n_queued + 1 WHERE id = $1", job_id)

    (claim,), fell_back = await _claim_while(cluster, job_uuid, worker, create)
    return claim, fell_back


async def _claim_while(
    cluster: Cluster,
    job_uuid: str,
    worker: WorkerSpec,
    change: Callable[[asyncpg.Connection, int], Awaitable[None]],
) -> tuple[list[Claim], bool]:
    """A claim of one task, during which -- once its guarded statement waits for the job's
    row, held here -- `change` writes (given the job's id) and commits under that lock;
    the claims, and whether the guarded path left them to the transaction."""
    core = cluster.services.core
    holder = await connect(core.db.url)
    try:
        held = holder.transaction()
        await held.start()
        job_id = await holder.fetchval("SELECT id FROM jobs WHERE uuid = $1 FOR UPDATE", job_uuid)
        before = core.claims.unguarded
        system = core.settings.system_caller()
        claiming = asyncio.create_task(core.claims.claim(system, worker, 1))
        await eventually(lambda: lock_waits(holder))  # (the guarded statement waits)
        await change(holder, job_id)
        await held.commit()
        claims = await claiming
    finally:
        await holder.close()
    return claims, core.claims.unguarded == before + 1


async def test_limits_set_while_the_claim_waited_are_obeyed(cluster: Cluster) -> None:
    """The job's limits (its row's version moved) written while the guarded statement
    waited for the job's lock: the guard refuses, and the transaction reads the limit,
    which leaves no place on the node."""
    _skip_sqlite(cluster)
    job_uuid = await _job_past_its_seed(cluster, "limited.py")
    await _create(cluster, job_uuid, 1)

    async def limit(holder: asyncpg.Connection, job_id: int) -> None:
        await holder.execute(
            "UPDATE jobs SET runtime_constraints = '{\"max_tasks_per_node\": 0}',"
            " version = version + 1 WHERE id = $1",
            job_id,
        )

    worker = WorkerSpec(worker_id="w", node_name="n1")
    claims, fell_back = await _claim_while(cluster, job_uuid, worker, limit)
    assert fell_back and claims == []
