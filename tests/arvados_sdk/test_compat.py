"""Arvados callers' habits that jobtask once answered differently, through the real SDK."""

from __future__ import annotations

import grpc
import pytest
from jobtask.v1 import job_pb2, job_service_pb2

from tests.arvados_sdk.conftest import SdkStack
from tests.arvados_sdk.test_sdk_api import job_body

pytestmark = pytest.mark.timeout(120)


async def test_whole_records_sent_back_and_task_parameters_updated(sdk_stack: SdkStack) -> None:
    out = await sdk_stack.run(f"""
job = api.jobs().create(body={job_body("whole.py")}).execute()
api.jobs().lock(uuid=job["uuid"]).execute()
whole = api.jobs().get(uuid=job["uuid"]).execute()
whole["priority"] = 6
updated = api.jobs().update(uuid=job["uuid"], body={{"job": whole}}).execute()
changed = dict(updated, tasks_summary=dict(updated["tasks_summary"], todo=40))
refused = api_error(api.jobs().update(uuid=job["uuid"], body={{"job": changed}}))
task = api.job_tasks().list(filters=[["job_uuid", "=", job["uuid"]]]).execute()["items"][0]
task["parameters"] = {{"input": "new"}}
task = api.job_tasks().update(uuid=task["uuid"], body={{"job_task": task}}).execute()
bare = api.job_tasks().update(
    uuid=task["uuid"], body={{"job_task": {{"parameters": {{"input": "again"}}}}}}
).execute()
emit({{"whole": whole, "updated": updated, "refused": refused, "task": task, "bare": bare}})
""")
    assert out["whole"]["started_at"] and out["whole"]["tasks_summary"]
    assert out["updated"]["priority"] == 6
    assert out["updated"]["started_at"] == out["whole"]["started_at"]
    assert out["refused"]["status"] == 422
    assert out["refused"]["body"]["errors"][0].startswith("tasks_summary:")
    assert out["task"]["parameters"] == {"input": "new"}
    assert out["bare"]["parameters"] == {"input": "again"}


async def test_exact_integers_through_the_sdk_and_grpc(sdk_stack: SdkStack) -> None:
    exact = job_body("exact.py", script_parameters={"n": 4, "x": 2**53 - 1})
    twin = job_body("twin.py", script_parameters={"n": 2**53})
    twin_plus_one = job_body("twin.py", script_parameters={"n": 2**53 + 1})
    out = await sdk_stack.run(f"""
job = api.jobs().create(body={exact}).execute()
got = api.jobs().get(uuid=job["uuid"]).execute()
first = api_error(api.jobs().create(body={twin}))
second = api_error(api.jobs().create(body={twin_plus_one}))
too_big = api_error(api.jobs().update(uuid=job["uuid"], body={{"job": {{"priority": 2**63}}}}))
emit({{"got": got, "first": first, "second": second, "too_big": too_big}})
""")
    got = out["got"]["script_parameters"]
    assert got == {"n": 4, "x": 2**53 - 1} and isinstance(got["n"], int)
    for refused in (out["first"], out["second"]):
        assert refused["status"] == 422
        assert refused["body"]["errors"][0].startswith("script_parameters.n:")
    assert out["too_big"]["status"] == 422
    assert out["too_big"]["body"]["errors"][0].startswith("priority:")
    # Over gRPC the number is already a double: past 2^53 it is refused just the same.
    spec = job_pb2.Job(script="twin.py", script_version="master", repository="r")
    spec.script_parameters.update({"n": float(2**53 + 2)})
    with pytest.raises(grpc.aio.AioRpcError) as refused_rpc:
        await sdk_stack.jobs.CreateJob(job_service_pb2.CreateJobRequest(job=spec))
    assert refused_rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused_rpc.value.details() or "").startswith("script_parameters.n:")
