"""Submission: the seed task, duplicate detection, submit_id idempotence, defaults."""

from __future__ import annotations

import grpc
import pytest
from jobtask.v1 import job_service_pb2

from tests.conftest import Cluster
from tests.core.helpers import create_job, job_status, job_tasks, task_status


async def test_new_job_is_seeded_with_one_task(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="hash.py", script_parameters={"a": 1}))
    assert job.status == job_status("queued") and job.state == "Queued"
    assert job.kind == "arvados#job" and job.href == f"/jobs/{job.uuid}" and job.etag
    assert job.uuid.startswith("zzzzz-8i9sb-") and len(job.uuid) == 27
    assert not job.running and not job.HasField("success") and not job.HasField("started_at")
    (task,) = await job_tasks(cluster, job.uuid)
    assert task.sequence == 0 and dict(task.parameters) == {}
    assert task.status == task_status("queued") and not task.HasField("success")
    assert task.uuid.startswith("zzzzz-ot0gb-") and task.job_uuid == job.uuid
    assert job.tasks_summary.todo == 1


async def test_identical_job_is_returned_unless_duplicates_allowed(cluster: Cluster) -> None:
    spec = {"script": "hash.py", "script_version": "main", "script_parameters": {"input": "x"}}
    first = await cluster.jobs.CreateJob(create_job(**spec))
    again = await cluster.jobs.CreateJob(create_job(**spec))
    assert again.uuid == first.uuid
    forced = await cluster.jobs.CreateJob(create_job(**spec, allow_duplicate=True))
    assert forced.uuid != first.uuid
    other = await cluster.jobs.CreateJob(
        create_job(**{**spec, "script_parameters": {"input": "y"}})
    )
    assert other.uuid not in (first.uuid, forced.uuid)
    limited = await cluster.jobs.CreateJob(create_job(**spec, runtime_constraints={"max_nodes": 2}))
    assert limited.uuid not in (first.uuid, forced.uuid)


async def test_failed_or_canceled_job_is_not_reused(cluster: Cluster) -> None:
    first = await cluster.jobs.CreateJob(create_job(script="s.py"))
    await cluster.jobs.CancelJob(job_service_pb2.CancelJobRequest(uuid=first.uuid))
    again = await cluster.jobs.CreateJob(create_job(script="s.py"))
    assert again.uuid != first.uuid


async def test_submit_id_makes_submission_idempotent(cluster: Cluster) -> None:
    spec = {"script": "s.py", "submit_id": "client-42", "priority": 3}
    first = await cluster.jobs.CreateJob(create_job(**spec, allow_duplicate=True))
    again = await cluster.jobs.CreateJob(create_job(**spec, allow_duplicate=True))
    assert again.uuid == first.uuid and again.submit_id == "client-42"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.jobs.CreateJob(create_job(**{**spec, "priority": 4}, allow_duplicate=True))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "submit_id" in (err.value.details() or "")


async def test_seed_names_are_accepted_on_input(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(
        create_job(script_name="legacy.py", resource_limits={"max_tasks_per_node": 2})
    )
    assert job.script == "legacy.py" and job.script_name == "legacy.py"
    assert job.runtime_constraints.max_tasks_per_node == 2
    assert job.resource_limits.max_tasks_per_node == 2
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.jobs.CreateJob(create_job(script="a.py", script_name="b.py"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "script_name" in (err.value.details() or "")


async def test_script_is_required(cluster: Cluster) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.jobs.CreateJob(create_job(script_version="main"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("script:")
