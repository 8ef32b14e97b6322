"""An expired lease is lost at once: no report, renewal or exit on it counts, even before the
reaper ends its attempt; and an attempt keeps its lease's expiry as last renewed (the chaos
history proves every completion ran inside a live lease with it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import grpc
import pytest
from jobtask.domain.reports import Batch, Instruction, Report
from jobtask.manager.context import WorkerSpec, utcnow
from jobtask.manager.reports import Submission
from jobtask.store.schema import job_tasks, task_attempts
from jobtask.v1 import task_service_pb2
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import Cluster, running_cluster
from tests.core.helpers import get_task, task_status
from tests.worker_protocol.helpers import job_with_tasks


def _done() -> Batch:
    batch = Batch()
    batch.add(Report(seq=1, progress=1.0, success=True, output="out\n", exit_code=0))
    return batch


@pytest.fixture
async def slow_reaper(database_url: str) -> AsyncIterator[Cluster]:
    """A cluster whose reaper looks every 20 s (a third of a 60 s lease), once at its start:
    the shared fixture's (3 s leases) looks every second, and on a loaded machine it ended the
    expired attempt inside this test's window, before the test could see the lease lost
    without it. The test expires its lease by hand, so the lease's length does not matter."""
    async with running_cluster(database_url, lease_ttl=60.0) as c:
        yield c


async def test_an_expired_lease_is_lost_before_the_reaper_runs(slow_reaper: Cluster) -> None:
    cluster = slow_reaper
    core = cluster.services.core
    system = core.settings.system_caller()
    await job_with_tasks(cluster, "expiring.py", 1)
    worker = WorkerSpec(worker_id="we", node_name="node1", free_slots=2)
    expired, live = await core.claims.claim(system, worker, 2)
    gone, kept = expired.task, live.task
    assert gone.lease_id and kept.lease_id

    async def expire(conn: AsyncConnection) -> None:
        past = utcnow() - dt.timedelta(seconds=1)
        stmt = update(job_tasks).where(job_tasks.c.uuid == gone.uuid)
        await conn.execute(stmt.values(lease_expires_at=past))

    await core.db.transact(expire)
    reports = core.runs.reports
    renewed = await reports.renew_session(
        {gone.uuid: gone.lease_id, kept.uuid: kept.lease_id}, "we"
    )
    assert renewed[gone.uuid].verdict.instruction is Instruction.STOP
    assert renewed[kept.uuid].verdict.instruction is Instruction.CONTINUE

    (lost,) = await reports.apply_many([Submission(system, gone.uuid, gone.lease_id, _done())])
    assert lost.finished is None and lost.verdict.instruction is Instruction.STOP
    assert (await get_task(cluster, gone.uuid)).status == task_status("active")
    request = task_service_pb2.ReportTaskExitRequest(
        uuid=gone.uuid, lease_id=gone.lease_id, exit_code=0
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.tasks.ReportTaskExit(request)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "expired" in (refused.value.details() or "")

    (done,) = await reports.apply_many([Submission(system, kept.uuid, kept.lease_id, _done())])
    assert done.finished is not None and done.finished.status == "completed"
    async with core.db.read() as conn:
        row = (
            await conn.execute(
                select(task_attempts.c.ended_at, task_attempts.c.lease_expires_at).where(
                    task_attempts.c.lease_id == kept.lease_id
                )
            )
        ).one()
    ended = row.ended_at.replace(tzinfo=dt.UTC) if row.ended_at.tzinfo is None else row.ended_at
    expires = row.lease_expires_at
    expires = expires.replace(tzinfo=dt.UTC) if expires.tzinfo is None else expires
    assert ended <= expires  # the completion ran inside its lease, as last renewed
