"""Cancel and pause reach a running worker; lost streams and leases are temporary failures."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from jobtask.v1 import job_service_pb2 as js
from jobtask.v1 import job_task_pb2, task_service_pb2

from tests.conftest import Cluster, running_cluster, start_cluster
from tests.core.helpers import create_job, get_job, get_task, job_status, task_status
from tests.polling import DEADLINE, eventually
from tests.worker_protocol.helpers import Run, claim_as

CANCEL = task_service_pb2.INSTRUCTION_CANCEL
STOP = task_service_pb2.INSTRUCTION_STOP


async def test_cancel_is_pushed_to_an_idle_stream(signalled: Cluster) -> None:
    """The CANCEL is the very next message on a stream that sends nothing more: pushed on
    the change signal (this cluster has no other wake-up within the deadline)."""
    cluster = signalled
    job = await cluster.jobs.CreateJob(create_job(script="slow.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    await run.acked(await run.send(progress=0.1))
    await cluster.jobs.CancelJob(js.CancelJobRequest(uuid=job.uuid))
    told = await run.recv(DEADLINE)
    assert told is not None and told.instruction == CANCEL, told
    assert "cancel" in told.reason
    # The worker stops its process and reports the exit: the attempt closes, nothing fails.
    final = await run.exit(signal=15)
    assert final.task.status == task_status("canceled") and final.task.failed_count == 0
    assert (await get_job(cluster, job.uuid)).status == job_status("canceled")


async def test_pause_cancels_the_process_and_the_task_waits_paused(signalled: Cluster) -> None:
    cluster = signalled
    job = await cluster.jobs.CreateJob(create_job(script="slow.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    await run.acked(await run.send(progress=0.3))
    paused = await cluster.jobs.PauseJob(js.PauseJobRequest(uuid=job.uuid))
    assert paused.status == job_status("pause-requested")
    told = await run.recv(DEADLINE)
    assert told is not None and told.instruction == CANCEL, told
    assert "pause" in told.reason
    final = await run.exit(signal=2)
    assert final.task.status == task_status("paused") and final.task.failed_count == 0
    assert final.task.progress == pytest.approx(0.3)
    assert (await get_job(cluster, job.uuid)).status == job_status("paused")
    resumed = await cluster.jobs.ResumeJob(js.ResumeJobRequest(uuid=job.uuid))
    assert resumed.status == job_status("queued")
    again = await claim_as(cluster, "w1")
    assert again is not None and again.task.uuid == a.task.uuid


async def test_a_cut_streams_task_waits_out_its_lease_then_runs_elsewhere(
    cluster: Cluster,
) -> None:
    """A stream cut without the process's exit -- the worker gone, or only its connection
    (a proxy restarted): the lease lives on, since the worker may reconnect and carry on
    (test_session) and its process may still run where the server cannot reach it. Once
    the lease has run out the reaper ends the attempt, the seeds' temporary failure, and
    another worker runs the task (Flamenco's failure memory: not the first while the
    second can). No two runs at once."""
    await cluster.jobs.CreateJob(create_job(script="flaky.py"))
    a = await claim_as(cluster, "w1", "nodeA")
    assert a is not None
    assert await claim_as(cluster, "w2", "nodeB") is None  # w2 is live, and idle
    run = Run(cluster, a)
    reply = await run.acked(await run.send(progress=0.5, log="working\n"))
    lease_end = reply.lease.expires_at.ToDatetime(tzinfo=dt.UTC)
    run.call.cancel()  # the worker vanished mid-task, or its connection did
    asked = dt.datetime.now(dt.UTC)
    task = await get_task(cluster, a.task.uuid)
    if asked < lease_end:  # (a loaded machine may take longer than the lease to ask)
        assert task.status == task_status("active") and task.failed_count == 0
        assert await claim_as(cluster, "w2", "nodeB") is None

    async def soft_failed() -> job_task_pb2.JobTask | None:
        task = await get_task(cluster, a.task.uuid)
        return task if task.status == task_status("soft-failed") else None

    task = await eventually(soft_failed)
    assert task.failed_count == 1 and "lease expired" in task.failed_log, task.failed_log
    assert task.runnable_after.ToDatetime(tzinfo=dt.UTC) >= lease_end
    # Flamenco's failure memory: not w1 again while w2 can run it.
    assert await claim_as(cluster, "w1", "nodeA") is None
    retry = await eventually(lambda: claim_as(cluster, "w2", "nodeB"))
    assert retry.task.uuid == a.task.uuid and retry.task.attempt == 2


async def test_failure_memory_ignores_workers_that_cannot_run_the_task(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(
        create_job(script="big.py", runtime_constraints={"min_ram_per_node": 1000})
    )
    a = await claim_as(cluster, "w1", "nodeA", ram_kib=2000)
    assert a is not None and a.job.uuid == job.uuid
    assert await claim_as(cluster, "w2", "nodeB", ram_kib=500) is None  # live, too small
    run = Run(cluster, a)
    final = await run.exit(exit_code=1)
    assert final.task.status == task_status("soft-failed")
    again = await claim_as(cluster, "w1", "nodeA", ram_kib=2000)
    assert again is not None and again.task.uuid == a.task.uuid


# The lease of test_an_expired_lease_is_reaped_within_two_heartbeat_intervals, and how
# often it is renewed there: a heartbeat's round trip may take seconds on a loaded 2-core
# machine, and at 1 s leases renewed every 0.33 s one lapsed before its ack (the stream
# ended under the test).
SHORT_TTL = 3.0
BEAT = SHORT_TTL / 6


@pytest.fixture
async def short_lease(database_url: str) -> AsyncIterator[Cluster]:
    async with running_cluster(database_url, lease_ttl=SHORT_TTL) as c:
        yield c


async def test_an_expired_lease_is_reaped_within_two_heartbeat_intervals(
    short_lease: Cluster,
) -> None:
    cluster = short_lease
    await cluster.jobs.CreateJob(create_job(script="hang.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    # Heartbeats (messages with nothing set) keep the lease for two lifetimes.
    for _ in range(12):
        await asyncio.sleep(BEAT)
        reply = await run.acked(await run.send())
        assert reply.instruction == task_service_pb2.INSTRUCTION_CONTINUE
    last_lease = reply.lease.expires_at.ToDatetime(tzinfo=dt.UTC)
    assert (await get_task(cluster, a.task.uuid)).status == task_status("active")
    # Then the worker hangs, its stream still open: the lease lapses and the reaper ends it,
    # never before the expiry its last renewal gave (server times, not the test's clock).
    told = await run.until(lambda r: r.instruction == STOP)
    assert "lease" in told.reason
    assert await run.recv() is None
    # The stream says STOP once the lease is past its expiry, which may be just before the
    # reaper's pass commits (a fresh-clone CI run read the task still active): wait for it.

    async def reaped() -> Any:
        found = await get_task(cluster, a.task.uuid)
        return found if found.status != task_status("active") else None

    task = await eventually(reaped)
    assert task.status == task_status("soft-failed") and task.failed_count == 1
    assert "lease expired" in task.failed_log
    assert task.failed_at.ToDatetime(tzinfo=dt.UTC) >= last_lease


async def test_a_server_shutdown_keeps_the_lease_for_the_worker_to_resume(
    database_url: str,
) -> None:
    first = await start_cluster(database_url)
    try:
        await first.jobs.CreateJob(create_job(script="long.py"))
        a = await claim_as(first, "w1")
        assert a is not None
        run = Run(first, a)
        await run.acked(await run.send(progress=0.6))
        await first.services.stop(0.2)  # a rolling restart, the stream still open
    finally:
        for channel in first.channels:
            await channel.close(None)
    second = await start_cluster(database_url)
    try:
        task = await get_task(second, a.task.uuid)
        assert task.status == task_status("active") and task.failed_count == 0
        again = Run(second, a)  # the same lease, on the restarted service
        reply = await again.acked(await again.send(progress=0.7))
        assert reply.instruction == task_service_pb2.INSTRUCTION_CONTINUE
        final = await again.exit(progress=1.0, success=True)
        assert final.task.status == task_status("completed") and final.task.attempt == 1
    finally:
        await second.close()
