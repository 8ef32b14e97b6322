"""Bad input: INVALID_ARGUMENT (or NOT_FOUND) naming the field, and no half-written rows."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from jobtask.v1 import job_service_pb2 as js
from jobtask.v1 import task_service_pb2 as ts

from tests.conftest import Cluster
from tests.core.helpers import add_task, claim, create_job, job, job_tasks, task


async def rpc_error(call) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def test_malformed_and_wrong_kind_uuids(cluster: Cluster) -> None:
    e = await rpc_error(cluster.jobs.GetJob(js.GetJobRequest(uuid="zzzzz-8i9sb-short")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and str(e.details()).startswith("uuid:")
    t = await rpc_error(cluster.jobs.GetJob(js.GetJobRequest(uuid="zzzzz-ot0gb-000000000000000")))
    assert t.code() == grpc.StatusCode.INVALID_ARGUMENT and "arvados#jobTask" in str(t.details())
    n = await rpc_error(cluster.jobs.GetJob(js.GetJobRequest(uuid="zzzzz-8i9sb-000000000000000")))
    assert n.code() == grpc.StatusCode.NOT_FOUND
    c = await rpc_error(
        cluster.tasks.CreateTask(
            ts.CreateTaskRequest(job_task=task(job_uuid="zzzzz-8i9sb-000000000000000"))
        )
    )
    assert c.code() == grpc.StatusCode.NOT_FOUND


async def test_invalid_argument_carries_the_field_in_details(cluster: Cluster) -> None:
    e = await rpc_error(cluster.jobs.GetJob(js.GetJobRequest(uuid="bad")))
    status = rpc_status.from_call(e)  # type: ignore[arg-type]  # an AioRpcError is a call
    assert status is not None
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    assert detail.field_violations[0].field == "uuid"


async def test_manager_fields_are_rejected_when_changed_and_ignored_when_echoed(
    cluster: Cluster,
) -> None:
    created = await cluster.jobs.CreateJob(create_job(script="s.py"))
    (seed_task,) = await job_tasks(cluster, created.uuid)
    # An old SDK sends the whole record back: unchanged read-only values are ignored.
    echo = ts.UpdateTaskRequest(uuid=seed_task.uuid, job_task=seed_task)
    echo.update_mask.paths.extend(
        ["qsequence", "job_uuid", "created_at", "kind", "etag", "sequence"]
    )
    assert (await cluster.tasks.UpdateTask(echo)).uuid == seed_task.uuid
    for name, value in [
        ("qsequence", 99),
        ("job_uuid", "zzzzz-8i9sb-000000000000000"),
        ("failed_count", 2),
    ]:
        request = ts.UpdateTaskRequest(uuid=seed_task.uuid, job_task=task(**{name: value}))
        request.update_mask.paths.append(name)
        e = await rpc_error(cluster.tasks.UpdateTask(request))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(e.details()).startswith(f"{name}:")
    job_request = js.UpdateJobRequest(uuid=created.uuid, job=job(running=True))
    job_request.update_mask.paths.append("running")
    e = await rpc_error(cluster.jobs.UpdateJob(job_request))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and str(e.details()).startswith("running:")


async def test_bad_values_write_nothing(cluster: Cluster) -> None:
    e = await rpc_error(
        cluster.jobs.CreateJob(
            create_job(script="s.py", runtime_constraints={"max_nodes": 1, "min_nodes": 2})
        )
    )
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_nodes" in str(e.details())
    e = await rpc_error(cluster.jobs.CreateJob(create_job(script="x" * 5000)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and str(e.details()).startswith("script:")
    big = {"blob": "y" * 300_000}
    e = await rpc_error(cluster.jobs.CreateJob(create_job(script="s.py", script_parameters=big)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(e.details()).startswith("script_parameters:")
    listing = await cluster.jobs.ListJobs(js.ListJobsRequest())
    assert listing.items_available == 0
    listed = await cluster.tasks.ListTasks(ts.ListTasksRequest())
    assert listed.items_available == 0


async def test_progress_out_of_range_and_unknown_mask_path(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="s.py"))
    a = await claim(cluster)
    request = ts.UpdateTaskRequest(uuid=a.task.uuid, job_task=task(progress=1.5))
    request.update_mask.paths.append("progress")
    e = await rpc_error(cluster.tasks.UpdateTask(request))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and str(e.details()).startswith("progress:")
    request = ts.UpdateTaskRequest(uuid=a.task.uuid)
    request.update_mask.paths.append("bogus")
    e = await rpc_error(cluster.tasks.UpdateTask(request))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and str(e.details()).startswith(
        "update_mask:"
    )


async def test_child_of_another_jobs_task_is_rejected(cluster: Cluster) -> None:
    one = await cluster.jobs.CreateJob(create_job(script="a.py"))
    two = await cluster.jobs.CreateJob(create_job(script="b.py"))
    (two_seed,) = await job_tasks(cluster, two.uuid)
    e = await rpc_error(add_task(cluster, one.uuid, created_by_job_task_uuid=two_seed.uuid))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(e.details()).startswith("created_by_job_task_uuid:")


async def test_delete_rules(cluster: Cluster) -> None:
    j = await cluster.jobs.CreateJob(create_job(script="s.py"))
    extra = await add_task(cluster, j.uuid, sequence=1)
    deleted = await cluster.tasks.DeleteTask(ts.DeleteTaskRequest(uuid=extra.uuid))
    assert deleted.uuid == extra.uuid
    await claim(cluster)
    e = await rpc_error(cluster.jobs.DeleteJob(js.DeleteJobRequest(uuid=j.uuid)))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    await cluster.jobs.CancelJob(js.CancelJobRequest(uuid=j.uuid))
    gone = await cluster.jobs.DeleteJob(js.DeleteJobRequest(uuid=j.uuid))
    assert gone.uuid == j.uuid
    e = await rpc_error(cluster.jobs.GetJob(js.GetJobRequest(uuid=j.uuid)))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert await job_tasks(cluster, j.uuid) == []
