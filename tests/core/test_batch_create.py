"""BatchCreateTasks: many tasks in one call and one transaction, all or none."""

from __future__ import annotations

import grpc
import pytest
from jobtask.v1 import task_service_pb2, watch_pb2

from tests.conftest import Cluster
from tests.core.helpers import (
    claim,
    create_job,
    get_job,
    job_tasks,
    succeed,
    task,
    token_md,
)
from tests.worker_protocol.helpers import watch_events

TSP = task_service_pb2


def _batch(job_uuid: str, n: int, **fields: object) -> TSP.BatchCreateTasksRequest:
    return TSP.BatchCreateTasksRequest(
        requests=[
            TSP.CreateTaskRequest(
                job_task=task(job_uuid=job_uuid, parameters={"input": f"part{i}"}, **fields)
            )
            for i in range(n)
        ]
    )


async def test_a_task_fans_out_in_one_call_and_its_children_run_in_order(
    cluster: Cluster,
) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="split.py"))
    seed = await claim(cluster)
    request = _batch(job.uuid, 5, sequence=1, created_by_job_task_uuid=seed.task.uuid)
    created = await cluster.tasks.BatchCreateTasks(request, metadata=token_md(seed.task_token))
    assert [t.parameters["input"] for t in created.job_tasks] == [f"part{i}" for i in range(5)]
    assert all(t.created_by_job_task_uuid == seed.task.uuid for t in created.job_tasks)
    counted = await get_job(cluster, job.uuid)
    assert counted.tasks_summary.todo == 5 and counted.tasks_summary.running == 1

    await succeed(cluster, seed, output="head\n")
    for _ in range(5):
        child = await claim(cluster)
        await succeed(cluster, child, output=f"{child.task.parameters['input']}\n")
    done = await get_job(cluster, job.uuid)
    assert done.output == "head\npart0\npart1\npart2\npart3\npart4\n"
    assert done.tasks_summary.done == 6
    # One task_created event each, in the order of the requests.
    events = await watch_events(cluster, job.uuid, after_seq=0)
    made = [e.task_uuid for e in events if e.type == watch_pb2.WATCH_EVENT_TYPE_TASK_CREATED]
    assert made[1:] == [t.uuid for t in created.job_tasks]


async def test_one_bad_request_creates_nothing_and_is_named(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="a.py"))
    other = await cluster.jobs.CreateJob(create_job(script="b.py"))
    (foreign,) = await job_tasks(cluster, other.uuid)
    request = _batch(job.uuid, 3)
    request.requests[2].job_task.created_by_job_task_uuid = foreign.uuid
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.tasks.BatchCreateTasks(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests[2].job_task.created_by_job_task_uuid" in (refused.value.details() or "")
    assert len(await job_tasks(cluster, job.uuid)) == 1  # its seed task only

    request = _batch(job.uuid, 2)
    request.requests[1].job_task.uuid = "zzzzz-ot0gb-000000000000000"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.tasks.BatchCreateTasks(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests[1].job_task.uuid" in (refused.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.tasks.BatchCreateTasks(_batch(job.uuid, 1001))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests" in (refused.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.tasks.BatchCreateTasks(TSP.BatchCreateTasksRequest())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(await job_tasks(cluster, job.uuid)) == 1


async def test_a_task_token_creates_in_its_own_job_only(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="a.py"))
    other = await cluster.jobs.CreateJob(create_job(script="b.py"))
    seed = await claim(cluster)
    mine = seed.task.job_uuid
    theirs = other.uuid if mine == job.uuid else job.uuid
    request = _batch(mine, 1)
    request.requests.extend(_batch(theirs, 1).requests)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.tasks.BatchCreateTasks(request, metadata=token_md(seed.task_token))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(await job_tasks(cluster, mine)) == 1


async def test_tasks_of_several_jobs_in_one_call(cluster: Cluster) -> None:
    first = await cluster.jobs.CreateJob(create_job(script="a.py"))
    second = await cluster.jobs.CreateJob(create_job(script="b.py"))
    request = _batch(second.uuid, 2)
    request.requests.extend(_batch(first.uuid, 3).requests)
    created = await cluster.tasks.BatchCreateTasks(request)
    assert [t.job_uuid for t in created.job_tasks] == [second.uuid] * 2 + [first.uuid] * 3
    for uuid, n in ((first.uuid, 4), (second.uuid, 3)):
        assert (await get_job(cluster, uuid)).tasks_summary.todo == n
        assert len(await job_tasks(cluster, uuid)) == n


async def test_the_tasks_answered_are_the_tasks_stored(cluster: Cluster) -> None:
    """The created tasks are answered without reading them back (the INSERT returns their
    ids; the rest is what was written and the schema's defaults): a later read finds the
    same tasks, field for field."""
    job = await cluster.jobs.CreateJob(create_job(script="split.py"))
    seed = await claim(cluster)
    request = _batch(job.uuid, 3, sequence=2, created_by_job_task_uuid=seed.task.uuid)
    created = await cluster.tasks.BatchCreateTasks(request, metadata=token_md(seed.task_token))
    stored = {t.uuid: t for t in await job_tasks(cluster, job.uuid)}
    for answered in created.job_tasks:
        assert answered == stored[answered.uuid]


async def test_a_select_answers_only_the_attributes_asked_for(cluster: Cluster) -> None:
    """`select` (Arvados's on create): each created task comes back with the fields named
    and `kind`, each as a whole answer or a later read has it; the rest unset. The tasks
    are created all the same."""
    job = await cluster.jobs.CreateJob(create_job(script="split.py"))
    request = _batch(job.uuid, 3, sequence=2)
    request.select.extend(["uuid", "sequence", "etag"])
    created = await cluster.tasks.BatchCreateTasks(request)
    stored = {t.uuid: t for t in await job_tasks(cluster, job.uuid)}
    assert len(created.job_tasks) == 3 and len(stored) == 4
    for answered in created.job_tasks:
        whole = stored[answered.uuid]
        assert [f.name for f, _ in answered.ListFields()] == ["uuid", "etag", "kind", "sequence"]
        assert (answered.uuid, answered.etag, answered.kind, answered.sequence) == (
            whole.uuid,
            whole.etag,
            "arvados#jobTask",
            2,
        )


async def test_an_unknown_selected_attribute_creates_nothing_and_is_named(
    cluster: Cluster,
) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="a.py"))
    request = _batch(job.uuid, 2)
    request.select.extend(["uuid", "bogus"])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.tasks.BatchCreateTasks(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith("select: unknown attribute 'bogus'")
    assert len(await job_tasks(cluster, job.uuid)) == 1  # its seed task only
