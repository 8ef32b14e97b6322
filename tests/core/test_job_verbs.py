"""Cancel, requeue, pause and resume ripple to tasks; queue order; locked jobs."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from jobtask.v1 import job_service_pb2 as js

from tests.conftest import Cluster
from tests.core.helpers import (
    add_task,
    claim,
    create_job,
    exit_,
    get_job,
    job,
    job_status,
    job_tasks,
    succeed,
    task_status,
)


async def three_task_job(cluster: Cluster) -> tuple[str, object]:
    """A job with the seed task active and two more queued (same sequence)."""
    j = await cluster.jobs.CreateJob(create_job(script="s.py"))
    active = await claim(cluster)
    await add_task(cluster, j.uuid, parameters={"n": 1})
    await add_task(cluster, j.uuid, parameters={"n": 2})
    return j.uuid, active


def statuses(tasks: list[Any]) -> list[int]:
    return sorted(t.status for t in tasks)


async def test_cancel_cancels_queued_and_active_tasks(cluster: Cluster) -> None:
    uuid, active = await three_task_job(cluster)
    canceled = await cluster.jobs.CancelJob(js.CancelJobRequest(uuid=uuid))
    assert canceled.status == job_status("canceled") and canceled.success is False
    assert canceled.HasField("cancelled_at") and canceled.cancelled_by_user_uuid
    assert canceled.HasField("finished_at") and not canceled.running
    assert statuses(await job_tasks(cluster, uuid)) == [task_status("canceled")] * 3
    # The worker's late exit changes nothing; canceling again is a no-op.
    late = await exit_(cluster, active)
    assert late.status == task_status("canceled")
    again = await cluster.jobs.CancelJob(js.CancelJobRequest(uuid=uuid))
    assert again.status == job_status("canceled")


async def test_requeue_of_a_completed_job_requeues_every_task(cluster: Cluster) -> None:
    j = await cluster.jobs.CreateJob(create_job(script="s.py"))
    await succeed(cluster, await claim(cluster), output="x")
    done = await get_job(cluster, j.uuid)
    assert done.status == job_status("completed") and done.output == "x"
    requeued = await cluster.jobs.RequeueJob(js.RequeueJobRequest(uuid=j.uuid))
    assert requeued.status == job_status("queued") and requeued.state == "Queued"
    assert not requeued.HasField("finished_at") and not requeued.HasField("success")
    assert not requeued.HasField("output") and not requeued.HasField("is_locked_by_uuid")
    (task,) = await job_tasks(cluster, j.uuid)
    assert task.status == task_status("queued") and not task.HasField("success")
    assert task.progress == 0


async def test_requeue_of_a_failed_job_keeps_completed_tasks(cluster: Cluster) -> None:
    j = await cluster.jobs.CreateJob(create_job(script="s.py"))
    first = await claim(cluster)
    await add_task(cluster, j.uuid, sequence=1)
    await add_task(cluster, j.uuid, sequence=1)
    await succeed(cluster, first)
    second = await claim(cluster, "w2")
    await claim(cluster, "w3")
    await exit_(cluster, second)  # soft-failed
    for w in ("w4", "w5"):
        again = await claim(cluster, w)
        if again.task.uuid == second.task.uuid:
            await exit_(cluster, again)
    # Drive the flaky task to its retry limit.
    while (await get_job(cluster, j.uuid)).status != job_status("failed"):
        a = await claim(cluster, "w6", wait=0.2)
        assert a is not None
        await exit_(cluster, a)
    requeued = await cluster.jobs.RequeueJob(js.RequeueJobRequest(uuid=j.uuid))
    assert requeued.status == job_status("queued")
    tasks = await job_tasks(cluster, j.uuid)
    assert tasks[0].status == task_status("completed")
    assert [t.status for t in tasks[1:]] == [task_status("queued")] * 2
    assert all(t.failed_count == 0 for t in tasks[1:])


async def test_pause_waits_for_active_tasks_and_resume_requeues(cluster: Cluster) -> None:
    uuid, active = await three_task_job(cluster)
    pausing = await cluster.jobs.PauseJob(js.PauseJobRequest(uuid=uuid))
    assert pausing.status == job_status("pause-requested")
    tasks = await job_tasks(cluster, uuid)
    assert statuses(tasks) == sorted(
        [task_status("active"), task_status("paused"), task_status("paused")]
    )
    assert await claim(cluster, "w2") is None  # nothing is handed out while pausing
    await succeed(cluster, active)
    assert (await get_job(cluster, uuid)).status == job_status("paused")
    resumed = await cluster.jobs.ResumeJob(js.ResumeJobRequest(uuid=uuid))
    assert resumed.status == job_status("queued")
    assert await claim(cluster, "w2") is not None


async def test_pause_of_an_idle_job_is_immediate(cluster: Cluster) -> None:
    j = await cluster.jobs.CreateJob(create_job(script="s.py"))
    paused = await cluster.jobs.PauseJob(js.PauseJobRequest(uuid=j.uuid))
    assert paused.status == job_status("paused")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.jobs.RequeueJob(
            js.RequeueJobRequest(
                uuid=(await cluster.jobs.CreateJob(create_job(script="t.py"))).uuid
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "from queued to requeueing" in (err.value.details() or "")


async def test_illegal_verbs_name_both_statuses(cluster: Cluster) -> None:
    j = await cluster.jobs.CreateJob(create_job(script="s.py"))
    await succeed(cluster, await claim(cluster))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.jobs.CancelJob(js.CancelJobRequest(uuid=j.uuid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "from completed to cancel-requested" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.jobs.ResumeJob(js.ResumeJobRequest(uuid=j.uuid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_queue_orders_by_priority_then_age(cluster: Cluster) -> None:
    low = await cluster.jobs.CreateJob(create_job(script="a.py", priority=1))
    high = await cluster.jobs.CreateJob(create_job(script="b.py", priority=5))
    low2 = await cluster.jobs.CreateJob(create_job(script="c.py", priority=1))
    running = await cluster.jobs.CreateJob(create_job(script="d.py", priority=9))
    await cluster.jobs.LockJob(js.LockJobRequest(uuid=running.uuid))
    queue = await cluster.jobs.QueueJobs(js.ListJobsRequest())
    assert [j.uuid for j in queue.items] == [high.uuid, low.uuid, low2.uuid]
    assert queue.items_available == 3
    size = await cluster.jobs.QueueSize(js.QueueSizeRequest())
    assert size.queue_size == 3
    # Claims follow job priority too.
    first = await claim(cluster)
    assert first.job.uuid == running.uuid
    assert (await claim(cluster, "w2")).job.uuid == high.uuid


async def test_a_locked_job_keeps_its_definition_but_can_be_canceled(cluster: Cluster) -> None:
    j = await cluster.jobs.CreateJob(create_job(script="s.py", script_version="v1"))
    await claim(cluster)  # starting the job locks it
    started = await get_job(cluster, j.uuid)
    assert started.is_locked_by_uuid and started.status == job_status("active")
    request = js.UpdateJobRequest(uuid=j.uuid, job=job(script_version="v2"))
    request.update_mask.paths.append("script_version")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.jobs.UpdateJob(request)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "script_version" in (err.value.details() or "")
    bump = js.UpdateJobRequest(uuid=j.uuid, job=job(priority=7))
    bump.update_mask.paths.append("priority")
    assert (await cluster.jobs.UpdateJob(bump)).priority == 7
    canceled = await cluster.jobs.CancelJob(js.CancelJobRequest(uuid=j.uuid))
    assert canceled.status == job_status("canceled")


async def test_lock_marks_the_job_active_once(cluster: Cluster) -> None:
    j = await cluster.jobs.CreateJob(create_job(script="s.py"))
    locked = await cluster.jobs.LockJob(js.LockJobRequest(uuid=j.uuid))
    assert locked.status == job_status("active") and locked.state == "Running" and locked.running
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.jobs.LockJob(js.LockJobRequest(uuid=j.uuid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_status_through_update_uses_the_verbs(cluster: Cluster) -> None:
    j = await cluster.jobs.CreateJob(create_job(script="s.py"))
    request = js.UpdateJobRequest(uuid=j.uuid, job=job(status="JOB_STATUS_CANCELED"))
    request.update_mask.paths.append("status")
    assert (await cluster.jobs.UpdateJob(request)).status == job_status("canceled")
    bad = js.UpdateJobRequest(uuid=j.uuid, job=job(status="JOB_STATUS_COMPLETED"))
    bad.update_mask.paths.append("status")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.jobs.UpdateJob(bad)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "from canceled to completed" in (err.value.details() or "")
