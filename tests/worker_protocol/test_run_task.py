"""RunTask: reports applied and acknowledged, coalesced, the exit decided, bad input."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status
from jobtask.store import feed
from jobtask.v1 import task_service_pb2, watch_pb2

from tests.conftest import Cluster
from tests.core.helpers import (
    create_job,
    get_job,
    get_task,
    job_status,
    task_status,
    token_md,
)
from tests.worker_protocol.helpers import Run, claim_as, count_events, watch_events

STOP = task_service_pb2.INSTRUCTION_STOP
CONTINUE = task_service_pb2.INSTRUCTION_CONTINUE


async def test_reports_then_exit_complete_the_task_with_events(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="report.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    seq = await run.send(progress=0.25, log="starting\n")
    first = await run.acked(seq)
    assert first.instruction == CONTINUE
    assert first.lease.lease_id == a.lease.lease_id
    assert first.lease.expires_at.ToDatetime() >= a.lease.expires_at.ToDatetime()
    await run.send(progress=0.5, log="half way\n")
    await run.send(output="result\n")
    seq = await run.send(progress=1.0, success=True)
    await run.acked(seq)

    mid = await get_task(cluster, a.task.uuid)
    assert mid.status == task_status("active") and mid.success and mid.progress == 1.0
    assert mid.log == "starting\nhalf way\n" and mid.output == "result\n"

    final = await run.exit(exit_code=0)
    assert final.instruction == STOP and final.task.status == task_status("completed")
    assert final.acked_seq == run.seq
    done = await get_job(cluster, job.uuid)
    assert done.status == job_status("completed") and done.output == "result\n"

    events = await watch_events(cluster, job.uuid, after_seq=0)
    mine = [e for e in events if e.task_uuid == a.task.uuid]
    types = [e.type for e in mine]
    assert watch_pb2.WATCH_EVENT_TYPE_TASK_PROGRESS in types
    assert "".join(e.log for e in mine if e.type == watch_pb2.WATCH_EVENT_TYPE_TASK_LOG) == (
        "starting\nhalf way\n"
    )
    changed = [e.task for e in mine if e.type == watch_pb2.WATCH_EVENT_TYPE_TASK_CHANGED]
    assert changed[-1].status == task_status("completed")
    assert [e.seq for e in events] == sorted(e.seq for e in events)


async def test_two_thousand_progress_reports_cost_far_fewer_commits(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="fast.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    n = 2000
    for i in range(1, n + 1):
        await run.send(progress=i / (n + 1))
    await run.acked(n, within=30)
    task = await get_task(cluster, a.task.uuid)
    assert task.progress == n / (n + 1)  # the last report wins, exactly
    commits = await count_events(cluster, feed.TASK_PROGRESS, a.task.uuid)
    assert 1 <= commits <= n // 10, commits
    final = await run.exit(progress=1.0, success=True, exit_code=0)
    assert final.task.status == task_status("completed")


async def test_a_steady_thousand_reports_a_second_cost_a_few_commits(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="steady.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    started = time.monotonic()
    for i in range(1, 501):
        await run.send(progress=i / 1000)
        await asyncio.sleep(0.001)
    elapsed = time.monotonic() - started
    await run.acked(500)
    commits = await count_events(cluster, feed.TASK_PROGRESS, a.task.uuid)
    # One commit per coalescing window (0.1 s), give or take the first and the last.
    assert commits <= elapsed / 0.1 + 3, (commits, elapsed)
    assert (await get_task(cluster, a.task.uuid)).progress == 0.5


async def test_log_column_keeps_the_last_64_kib(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="chatty.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    line = "x" * 1023 + "\n"
    for _ in range(100):
        await run.send(log=line)
    seq = await run.send(log="the end\n")
    await run.acked(seq)
    task = await get_task(cluster, a.task.uuid)
    assert len(task.log.encode()) == 64 * 1024 and task.log.endswith("x\nthe end\n")
    await run.exit(progress=1.0, success=True)


async def test_handed_back_requeues_unfailed(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="long.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    await run.send(progress=0.4)
    final = await run.exit(handed_back=True)
    assert final.task.status == task_status("queued")
    assert final.task.failed_count == 0 and final.task.progress == pytest.approx(0.4)
    again = await claim_as(cluster, "w1")
    assert again is not None and again.task.uuid == a.task.uuid and again.task.attempt == 2


async def test_exit_without_success_is_a_temporary_failure(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="crash.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    await run.send(progress=0.3, log="Traceback ...\n")
    final = await run.exit(exit_code=1)
    assert final.task.status == task_status("soft-failed") and final.task.failed_count == 1
    assert "exit code 1" in final.task.failed_log and "Traceback" in final.task.failed_log


async def test_a_stale_lease_is_told_to_stop(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="s.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    stale = task_service_pb2.TaskAssignment()
    stale.CopyFrom(a)
    stale.lease.lease_id = "0" * 32
    run = Run(cluster, stale)
    await run.send(progress=0.9)
    answer = await run.recv()
    assert answer is not None and answer.instruction == STOP and "lease" in answer.reason
    assert await run.recv() is None
    assert await run.call.code() == grpc.StatusCode.OK
    # The real lease is untouched.
    task = await get_task(cluster, a.task.uuid)
    assert task.status == task_status("active") and task.progress == 0.0


@pytest.mark.parametrize(
    ("first", "field"),
    [
        ({}, "task_uuid"),
        ({"task_uuid": "zzzzz-ot0gb-000000000000000"}, "lease_id"),
    ],
)
async def test_first_message_must_name_task_and_lease(
    cluster: Cluster, first: dict[str, Any], field: str
) -> None:
    call = cluster.tasks.RunTask(metadata=token_md(cluster.root_token or ""))
    await call.write(task_service_pb2.RunTaskRequest(progress=0.5, **first))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(caught.value.details()).startswith(f"{field}:")


async def test_progress_out_of_range_is_rejected_and_ends_the_attempt(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="s.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    seq = await run.send(progress=0.5)
    await run.acked(seq)
    await run.send(progress=1.5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while await run.recv() is not None:
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]  # an AioRpcError is a call
    assert status is not None and "progress" in status.message
    task = await get_task(cluster, a.task.uuid)
    assert task.status == task_status("soft-failed") and task.failed_count == 1
    assert "invalid message" in task.failed_log
