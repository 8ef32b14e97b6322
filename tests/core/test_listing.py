"""Arvados's list parameters: every filter operator, where, order, limit, offset, count,
select."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.message import Message
from jobtask.v1 import job_service_pb2 as js
from jobtask.v1 import task_service_pb2 as ts

from tests.conftest import Cluster
from tests.core.helpers import add_task, create_job, filters, get_job, get_task


async def seed(cluster: Cluster) -> list[str]:
    uuids = []
    for i, (script, prio) in enumerate([("alpha.py", 1), ("beta.py", 2), ("Gamma.py", 3)]):
        j = await cluster.jobs.CreateJob(
            create_job(script=script, priority=prio, script_parameters={f"k{i}": i})
        )
        uuids.append(j.uuid)
    return uuids


async def scripts(cluster: Cluster, *conditions: list[Any]) -> list[str]:
    response = await cluster.jobs.ListJobs(
        js.ListJobsRequest(filters=filters(*conditions), order=["priority asc"])
    )
    return [j.script for j in response.items]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (["priority", "=", 2], ["beta.py"]),
        (["priority", "!=", 2], ["alpha.py", "Gamma.py"]),
        (["priority", "<", 2], ["alpha.py"]),
        (["priority", "<=", 2], ["alpha.py", "beta.py"]),
        (["priority", ">", 2], ["Gamma.py"]),
        (["priority", ">=", 2], ["beta.py", "Gamma.py"]),
        (["script", "like", "%ta.py"], ["beta.py"]),
        (["script", "like", "g%"], []),
        (["script", "ilike", "g%"], ["Gamma.py"]),
        (["script", "in", ["alpha.py", "Gamma.py"]], ["alpha.py", "Gamma.py"]),
        (["script", "not in", ["alpha.py"]], ["beta.py", "Gamma.py"]),
        (["uuid", "is_a", "arvados#job"], ["alpha.py", "beta.py", "Gamma.py"]),
        (["uuid", "is_a", "arvados#jobTask"], []),
        (["script_parameters", "exists", "k1"], ["beta.py"]),
        (["submit_id", "=", None], ["alpha.py", "beta.py", "Gamma.py"]),
        (["status", "=", "queued"], ["alpha.py", "beta.py", "Gamma.py"]),
        (["running", "=", "f"], ["alpha.py", "beta.py", "Gamma.py"]),
        ([["script", "script_version"], "=", "beta.py"], ["beta.py"]),
    ],
)
async def test_filter_operators(
    cluster: Cluster, condition: list[Any], expected: list[str]
) -> None:
    await seed(cluster)
    assert await scripts(cluster, condition) == expected


async def test_datetime_filters_and_where(cluster: Cluster) -> None:
    await seed(cluster)
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    assert len(await scripts(cluster, ["created_at", ">", past])) == 3
    assert await scripts(cluster, ["created_at", "<", past]) == []
    where = struct_pb2.Struct()
    where.update({"script": "beta.py"})
    response = await cluster.jobs.ListJobs(js.ListJobsRequest(where=where))
    assert [j.script for j in response.items] == ["beta.py"]


async def test_limit_offset_order_count(cluster: Cluster) -> None:
    await seed(cluster)
    page = await cluster.jobs.ListJobs(
        js.ListJobsRequest(order=["priority desc"], limit=2, offset=1)
    )
    assert [j.priority for j in page.items] == [2, 1]
    assert page.items_available == 3 and page.limit == 2 and page.offset == 1
    assert page.kind == "arvados#jobList"
    clamped = await cluster.jobs.ListJobs(js.ListJobsRequest(limit=2**62, count="none"))
    assert clamped.limit == 1000 and not clamped.HasField("items_available")
    default = await cluster.jobs.ListJobs(js.ListJobsRequest())
    assert default.limit == 100


async def test_tasks_filter_by_job_and_order_by_qsequence(cluster: Cluster) -> None:
    uuids = await seed(cluster)
    await add_task(cluster, uuids[0], sequence=3)
    response = await cluster.tasks.ListTasks(
        ts.ListTasksRequest(filters=filters(["job_uuid", "=", uuids[0]]), order=["qsequence desc"])
    )
    assert [t.sequence for t in response.items] == [3, 0]
    assert response.items[0].qsequence > response.items[1].qsequence
    assert response.kind == "arvados#jobTaskList"


@pytest.mark.parametrize(
    ("request_fields", "field_named"),
    [
        ({"filters": [["script", "~", "x"]]}, "filters[0]"),
        ({"filters": [["nope", "=", "x"]]}, "filters[0]"),
        ({"filters": [["priority", "=", "high"]]}, "filters[0]"),
        ({"filters": [["script", "in", "x"]]}, "filters[0]"),
        ({"filters": [["script", "exists", "x"]]}, "filters[0]"),
        ({"filters": [["status", "=", "bogus"]]}, "filters[0]"),
        ({"filters": [["created_at", ">", "yesterday"]]}, "filters[0]"),
        ({"filters": [["script"]]}, "filters[0]"),
        ({"order": ["nope desc"]}, "order"),
        ({"select": ["nope"]}, "select"),
        ({"limit": -1}, "limit"),
        ({"offset": -5}, "offset"),
        ({"count": "some"}, "count"),
    ],
)
async def test_bad_list_parameters_name_the_field(
    cluster: Cluster, request_fields: dict[str, Any], field_named: str
) -> None:
    request = js.ListJobsRequest()
    for key, value in request_fields.items():
        if key == "filters":
            request.filters.CopyFrom(filters(*value))
        elif isinstance(value, list):
            getattr(request, key).extend(value)
        else:
            setattr(request, key, value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.jobs.ListJobs(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field_named)


def field_names(message: Message) -> set[str]:
    """The fields a message carries (proto3: set, or not at their default)."""
    return {field.name for field, _ in message.ListFields()}


async def test_select_keeps_only_the_named_fields_of_jobs(cluster: Cluster) -> None:
    await seed(cluster)
    full = await cluster.jobs.ListJobs(js.ListJobsRequest(order=["priority asc"]))
    select = ["uuid", "status", "script_parameters", "runtime_constraints", "tasks_summary"]
    for list_jobs in (cluster.jobs.ListJobs, cluster.jobs.QueueJobs):
        page = await list_jobs(js.ListJobsRequest(select=select, order=["priority asc"]))
        assert [j.uuid for j in page.items] == [j.uuid for j in full.items]
        assert page.items_available == 3 and page.kind == "arvados#jobList"
        for trimmed, whole in zip(page.items, full.items, strict=True):
            # `kind` is kept, as Arvados adds it to every select.
            assert field_names(trimmed) == {*select, "kind"}
            assert trimmed.kind == "arvados#job"
            for name in select:
                assert getattr(trimmed, name) == getattr(whole, name)
            for name in ("etag", "script", "script_name", "priority", "owner_uuid"):
                assert getattr(whole, name) and not getattr(trimmed, name)
            for name in ("created_at", "modified_at", "resource_limits"):
                assert whole.HasField(name) and not trimmed.HasField(name)


async def test_select_empty_returns_every_field(cluster: Cluster) -> None:
    uuids = await seed(cluster)
    page = await cluster.jobs.ListJobs(js.ListJobsRequest(filters=filters(["uuid", "=", uuids[1]])))
    (listed,) = page.items
    assert listed == await get_job(cluster, uuids[1])
    assert {"uuid", "etag", "kind", "created_at", "script", "script_name", "priority"} <= (
        field_names(listed)
    )
    tasks = await cluster.tasks.ListTasks(
        ts.ListTasksRequest(filters=filters(["uuid", "is_a", "arvados#jobTask"]))
    )
    assert len(tasks.items) == 3
    for task in tasks.items:
        assert task == await get_task(cluster, task.uuid)


async def test_select_keeps_only_the_named_fields_of_tasks(cluster: Cluster) -> None:
    uuids = await seed(cluster)
    await add_task(cluster, uuids[0], sequence=3, parameters={"part": 1})
    request = ts.ListTasksRequest(
        filters=filters(["job_uuid", "=", uuids[0]]), order=["qsequence desc"]
    )
    full = await cluster.tasks.ListTasks(request)
    select = ["job_uuid", "sequence", "parameters", "status"]
    request.select.extend(select)
    page = await cluster.tasks.ListTasks(request)
    assert [t.sequence for t in page.items] == [3, 0]
    for trimmed, whole in zip(page.items, full.items, strict=True):
        for name in select:
            assert getattr(trimmed, name) == getattr(whole, name)
        # sequence 0 and the seed task's empty parameters are defaults: not listed.
        assert field_names(trimmed) <= {*select, "kind"}
        assert {"job_uuid", "status", "kind"} <= field_names(trimmed)
        assert trimmed.kind == "arvados#jobTask"
        assert not trimmed.uuid and not trimmed.etag and not trimmed.qsequence
        for name in ("created_at", "runtime_constraints"):
            assert whole.HasField(name) and not trimmed.HasField(name)
    assert page.items[0].HasField("parameters")
