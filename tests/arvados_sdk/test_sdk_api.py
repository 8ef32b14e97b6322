"""The real Arvados SDK's `jobs()` and `job_tasks()` methods, unmodified, through the gateway.

Each test runs one SDK program (tests/arvados_sdk/conftest.py: PRELUDE gives it `api`,
`emit` and `api_error`) and checks what it printed, and the records behind it over gRPC.
"""

from __future__ import annotations

import re

import pytest
from google.protobuf import json_format
from jobtask.manager.tokens import issue_token
from jobtask.v1 import job_pb2, job_service_pb2, job_task_pb2, task_service_pb2

from tests.arvados_sdk.conftest import SdkStack

JS = job_pb2.JobStatus
TS = job_task_pb2.TaskStatus
JOB_UUID = re.compile(r"zzzzz-8i9sb-[0-9a-z]{15}")
TASK_UUID = re.compile(r"zzzzz-ot0gb-[0-9a-z]{15}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")

pytestmark = pytest.mark.timeout(120)


def job_body(script: str = "hash.py", **extra: object) -> str:
    """A `{"job": {...}}` body as Python source for an SDK program."""
    attrs = {
        "script": script,
        "repository": "arvados/sdk",
        "script_version": "master",
        "script_parameters": {"input": "x"},
        **extra,
    }
    return repr({"job": attrs})


async def grpc_job(stack: SdkStack, uuid: str) -> job_pb2.Job:
    job: job_pb2.Job = await stack.jobs.GetJob(job_service_pb2.GetJobRequest(uuid=uuid))
    return job


async def test_jobs_create_and_find_or_create(sdk_stack: SdkStack) -> None:
    out = await sdk_stack.run(f"""
first = api.jobs().create(body={job_body()}).execute()
found = api.jobs().create(body={job_body()}, find_or_create=True).execute()
other = api.jobs().create(body={job_body()}, find_or_create=False).execute()
emit({{"first": first, "found": found, "other": other}})
""")
    first, found, other = out["first"], out["found"], out["other"]
    assert JOB_UUID.fullmatch(first["uuid"])
    assert first["kind"] == "arvados#job" and first["href"] == f"/jobs/{first['uuid']}"
    assert first["state"] == "Queued" and first["running"] is False and first["success"] is None
    assert first["script_parameters"] == {"input": "x"}
    assert TIMESTAMP.fullmatch(first["created_at"])
    # find_or_create=True answers with the identical queued job; False makes another.
    assert found["uuid"] == first["uuid"]
    assert other["uuid"] != first["uuid"] and JOB_UUID.fullmatch(other["uuid"])
    stored = await grpc_job(sdk_stack, first["uuid"])
    assert stored.script == "hash.py" and stored.repository == "arvados/sdk"
    assert json_format.MessageToDict(stored.script_parameters) == {"input": "x"}
    assert stored.status == JS.JOB_STATUS_QUEUED


async def test_jobs_get_update_and_list_with_filters_and_order(sdk_stack: SdkStack) -> None:
    # Distinct parameters: identical jobs would be found rather than created again.
    bodies = [
        job_body("listed.py", priority=1),
        job_body("listed.py", priority=3, script_parameters={"n": 2}),
        job_body("listed.py", priority=2, script_parameters={"n": 3}),
        job_body("other.py", priority=9),
    ]
    out = await sdk_stack.run(f"""
made = [api.jobs().create(body=body).execute() for body in [{", ".join(bodies)}]]
got = api.jobs().get(uuid=made[0]["uuid"]).execute()
wrapped = api.jobs().update(uuid=made[0]["uuid"], body={{"job": {{"priority": 5}}}}).execute()
bare = api.jobs().update(uuid=made[1]["uuid"], body={{"priority": 4}}).execute()
by_priority = api.jobs().list(
    filters=[["script", "=", "listed.py"]], order=["priority desc"]
).execute()
ascending = api.jobs().list(
    filters=[["script", "=", "listed.py"], ["priority", "<", 5]], order="priority asc"
).execute()
selected = api.jobs().list(
    filters=[["uuid", "=", made[3]["uuid"]]], select=["uuid", "priority"]
).execute()
paged = arvados.util.list_all(
    api.jobs().list, filters=[["script", "in", ["listed.py", "other.py"]]], limit=1
)
emit({{
    "made": [j["uuid"] for j in made], "got": got, "wrapped": wrapped, "bare": bare,
    "by_priority": by_priority, "ascending": ascending, "selected": selected,
    "paged": [j["uuid"] for j in paged],
}})
""")
    made = out["made"]
    assert out["got"]["uuid"] == made[0] and out["got"]["priority"] == 1
    # Both body forms update: `{"job": {...}}` and bare attributes (Rails's wrap_parameters).
    assert out["wrapped"]["priority"] == 5 and out["bare"]["priority"] == 4
    assert out["wrapped"]["modified_at"] >= out["got"]["modified_at"]

    listed = out["by_priority"]
    assert listed["kind"] == "arvados#jobList" and listed["items_available"] == 3
    assert listed["offset"] == 0 and listed["limit"] == 100
    assert [(j["uuid"], j["priority"]) for j in listed["items"]] == [
        (made[0], 5),
        (made[1], 4),
        (made[2], 2),
    ]
    assert [j["uuid"] for j in out["ascending"]["items"]] == [made[2], made[1]]
    (only,) = out["selected"]["items"]
    assert only == {"uuid": made[3], "priority": 9, "kind": "arvados#job"}
    # list_all pages with limit=1 and offset until items_available: every job, once.
    assert sorted(out["paged"]) == sorted(made)

    assert (await grpc_job(sdk_stack, made[0])).priority == 5
    assert (await grpc_job(sdk_stack, made[1])).priority == 4


async def test_jobs_queue_and_cancel(sdk_stack: SdkStack) -> None:
    out = await sdk_stack.run(f"""
low = api.jobs().create(body={job_body("low.py", priority=1)}).execute()
high = api.jobs().create(body={job_body("high.py", priority=7)}).execute()
before = api.jobs().queue().execute()
cancelled = api.jobs().cancel(uuid=high["uuid"]).execute()
again = api.jobs().cancel(uuid=high["uuid"]).execute()
after = api.jobs().queue().execute()
size = api.jobs().queue_size().execute()
emit({{
    "low": low["uuid"], "high": high["uuid"], "before": before, "cancelled": cancelled,
    "again": again, "after": after, "size": size,
}})
""")
    low, high = out["low"], out["high"]
    # The queue: queued jobs only, highest priority first.
    assert out["before"]["kind"] == "arvados#jobList"
    assert [j["uuid"] for j in out["before"]["items"]] == [high, low]
    cancelled = out["cancelled"]
    assert cancelled["uuid"] == high and cancelled["state"] == "Cancelled"
    assert cancelled["success"] is False and TIMESTAMP.fullmatch(cancelled["cancelled_at"])
    # Cancelling a cancelled job changes nothing (Arvados: a no-op, 200).
    assert out["again"]["state"] == "Cancelled"
    assert out["again"]["cancelled_at"] == cancelled["cancelled_at"]
    assert [j["uuid"] for j in out["after"]["items"]] == [low]
    assert out["size"] == {"queue_size": 1}

    assert (await grpc_job(sdk_stack, high)).status == JS.JOB_STATUS_CANCELED
    assert (await grpc_job(sdk_stack, low)).status == JS.JOB_STATUS_QUEUED


async def test_job_tasks_create_get_list_and_update(sdk_stack: SdkStack) -> None:
    out = await sdk_stack.run(f"""
job = api.jobs().create(body={job_body("tasks.py")}).execute()
(seed,) = api.job_tasks().list(filters=[["job_uuid", "=", job["uuid"]]]).execute()["items"]
wrapped = api.job_tasks().create(body={{"job_task": {{
    "job_uuid": job["uuid"], "sequence": 1, "parameters": {{"input": "a"}},
}}}}).execute()
# As arvados.job_setup.one_task_per_input_file sends it: bare attributes.
bare = api.job_tasks().create(body={{
    "job_uuid": job["uuid"], "created_by_job_task_uuid": seed["uuid"], "sequence": 1,
    "parameters": {{"input": ". d41d8cd98f00b204e9800998ecf8427e+0 0:0:b.txt\\n"}},
}}).execute()
got = api.job_tasks().get(uuid=wrapped["uuid"]).execute()
level_one = api.job_tasks().list(
    filters=[["job_uuid", "=", job["uuid"]], ["sequence", "=", 1]], order=["qsequence desc"]
).execute()
children = api.job_tasks().list(
    filters=[["created_by_job_task_uuid", "=", seed["uuid"]]]
).execute()
progress = api.job_tasks().update(
    uuid=wrapped["uuid"], body={{"job_task": {{"progress": 0.25}}}}
).execute()
bare_update = api.job_tasks().update(uuid=bare["uuid"], body={{"progress": 0.5}}).execute()
frozen = api_error(api.job_tasks().update(uuid=wrapped["uuid"], body={{"sequence": 7}}))
emit({{
    "job": job["uuid"], "seed": seed, "wrapped": wrapped, "bare": bare, "got": got,
    "level_one": level_one, "children": children, "progress": progress,
    "bare_update": bare_update, "frozen": frozen,
}})
""")
    job_uuid, seed, wrapped, bare = out["job"], out["seed"], out["wrapped"], out["bare"]
    assert seed["sequence"] == 0 and seed["parameters"] == {} and seed["qsequence"] == 0
    for task in (wrapped, bare):
        assert TASK_UUID.fullmatch(task["uuid"]) and task["kind"] == "arvados#jobTask"
        assert task["job_uuid"] == job_uuid and task["sequence"] == 1
        assert task["success"] is None and task["progress"] == 0
    assert wrapped["parameters"] == {"input": "a"}
    assert bare["created_by_job_task_uuid"] == seed["uuid"]
    assert out["got"] == wrapped
    level_one = out["level_one"]
    assert level_one["kind"] == "arvados#jobTaskList" and level_one["items_available"] == 2
    assert [t["uuid"] for t in level_one["items"]] == [bare["uuid"], wrapped["uuid"]]
    assert [t["uuid"] for t in out["children"]["items"]] == [bare["uuid"]]
    assert out["progress"]["progress"] == 0.25 and out["bare_update"]["progress"] == 0.5
    frozen = out["frozen"]
    assert frozen["type"] == "ApiError" and frozen["status"] == 422
    assert "sequence" in frozen["text"]

    request = task_service_pb2.GetTaskRequest(uuid=bare["uuid"])
    stored: job_task_pb2.JobTask = await sdk_stack.tasks.GetTask(request)
    assert stored.progress == 0.5 and stored.status == TS.TASK_STATUS_QUEUED
    assert json_format.MessageToDict(stored.parameters) == {
        "input": ". d41d8cd98f00b204e9800998ecf8427e+0 0:0:b.txt\n"
    }
    stored = await sdk_stack.tasks.GetTask(task_service_pb2.GetTaskRequest(uuid=wrapped["uuid"]))
    assert stored.sequence == 1 and stored.progress == 0.25


async def test_errors_are_api_errors_with_our_text_and_status(sdk_stack: SdkStack) -> None:
    out = await sdk_stack.run(f"""
job = api.jobs().create(body={job_body()}).execute()
missing_job = api_error(api.jobs().get(uuid="zzzzz-8i9sb-000000000000000"))
missing_task = api_error(api.job_tasks().get(uuid="zzzzz-ot0gb-000000000000000"))
bad_attribute = api_error(api.jobs().list(filters=[["no_such_attribute", "=", 1]]))
bad_operator = api_error(api.job_tasks().list(filters=[["sequence", "~", 1]]))
missing_script = api_error(api.jobs().create(body={{"job": {{"repository": "r"}}}}))
emit({{
    "missing_job": missing_job, "missing_task": missing_task,
    "bad_attribute": bad_attribute, "bad_operator": bad_operator,
    "missing_script": missing_script,
}})
""")

    def check(name: str, status: int, *needles: str) -> None:
        error = out[name]
        assert error["type"] == "ApiError", error
        assert error["status"] == status, error
        body = error["body"]
        assert set(body) == {"errors", "error_token"}
        assert re.fullmatch(r"\d{10}\+[0-9a-f]{8}", body["error_token"])
        text = "; ".join(body["errors"])
        # The SDK shows the gateway's error text in its message.
        assert text in error["text"]
        for needle in needles:
            assert needle in text, text

    check("missing_job", 404, "zzzzz-8i9sb-000000000000000", "not found")
    check("missing_task", 404, "zzzzz-ot0gb-000000000000000", "not found")
    check("bad_attribute", 422, "no_such_attribute")
    check("bad_operator", 422, "~")
    check("missing_script", 422, "script")


async def test_tokens_401_and_403(sdk_stack: SdkStack) -> None:
    """A bad token is 401; a token whose scopes miss the request is 403."""
    services = sdk_stack.services
    _, scoped = await issue_token(
        services.core.db, services.core.settings, scopes=["GET /arvados/v1/jobs"]
    )
    program = """
listed = api.jobs().list().execute()
denied = api_error(api.jobs().create(body={"job": {"script": "s", "repository": "r"}}))
emit({"listed": listed["kind"], "denied": denied})
"""
    out = await sdk_stack.run(program, token=scoped)
    assert out["listed"] == "arvados#jobList"
    assert out["denied"]["status"] == 403 and out["denied"]["type"] == "ApiError"

    bad = await sdk_stack.run(
        "emit(api_error(api.jobs().list()))", token="v2/zzzzz-gj3su-000000000000000/nope"
    )
    assert bad["status"] == 401 and bad["type"] == "ApiError"
    assert bad["body"]["errors"]
