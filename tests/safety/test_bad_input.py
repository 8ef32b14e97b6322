"""Bad input is a 4xx / INVALID_ARGUMENT naming what is wrong; never UNKNOWN, a 5xx or the
text of an exception."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from jobtask.v1 import job_service_pb2

from tests.auth.conftest import code_of
from tests.conftest import Cluster
from tests.core.helpers import create_job, filters
from tests.gateway.conftest import Stack

JS = job_service_pb2
HUGE = 1180591620717411303424  # 2**70
DEEP_ARRAY = "[" * 1000 + "]" * 1000


def nested_struct(depth: int) -> struct_pb2.Struct:
    inner = struct_pb2.Struct()
    for _ in range(depth):
        outer = struct_pb2.Struct()
        outer.fields["a"].struct_value.CopyFrom(inner)
        inner = outer
    return inner


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"filters": f'[["priority","=",{HUGE}]]'}, "filters[0]"),
        ({"filters": f'[["priority","<","{HUGE}"]]'}, "filters[0]"),
        ({"filters": '[["priority","<",Infinity]]'}, "filters"),
        ({"filters": '[["priority","<",NaN]]'}, "filters"),
        ({"filters": '[["priority","<","1e400"]]'}, "filters[0]"),
        ({"where": f'{{"priority":{HUGE}}}'}, "where[priority]"),
        ({"filters": DEEP_ARRAY}, "filters"),
    ],
)
async def test_rest_list_parameters_are_4xx_naming_the_field(
    stack: Stack, params: dict[str, str], field: str
) -> None:
    answer = await stack.client.get("/arvados/v1/jobs", params=params)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["errors"][0].startswith(field), answer.text


async def test_rest_deep_json_body_is_400_naming_the_body(stack: Stack) -> None:
    for body in (DEEP_ARRAY, '{"job":{"script_parameters":' + '{"a":' * 1000 + "1" + "}" * 1002):
        answer = await stack.client.post(
            "/arvados/v1/jobs", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
        assert "the request body" in answer.json()["errors"][0]
    answer = await stack.client.post(
        "/arvados/v1/jobs",
        content='{"job":{"script_parameters":{"x":NaN}}}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422 and "finite" in answer.text, answer.text


async def test_rest_long_uuid_and_huge_token(stack: Stack) -> None:
    answer = await stack.client.get("/arvados/v1/jobs/" + "a" * 10000)
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["errors"][0].startswith("uuid:")
    assert len(answer.text) < 2000
    answer = await stack.client.get(
        "/arvados/v1/jobs", headers={"Authorization": "Bearer " + "x" * 60000}
    )
    assert answer.status_code in (401, 431), answer.text


async def code_and_details(call: Any) -> tuple[grpc.StatusCode, str]:
    code, details = await code_of(call)
    assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), details
    return code, details


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        (["priority", "=", float(HUGE)], "filters[0]"),
        (["priority", "=", str(HUGE)], "filters[0]"),
        (["priority", "<", math.inf], "filters"),
        (["priority", "<", -math.inf], "filters"),
        (["priority", "<", math.nan], "filters"),
    ],
)
async def test_grpc_filters_are_invalid_argument(
    cluster: Cluster, condition: list[Any], field: str
) -> None:
    code, details = await code_and_details(
        cluster.jobs.ListJobs(JS.ListJobsRequest(filters=filters(condition)))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(field), details


async def test_grpc_where_and_parameters(cluster: Cluster) -> None:
    where = struct_pb2.Struct()
    where["priority"] = float(HUGE)
    code, details = await code_and_details(cluster.jobs.ListJobs(JS.ListJobsRequest(where=where)))
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "where[priority]")
    for bad in (math.nan, math.inf):
        request = create_job(script="s", repository="r", script_version="v")
        request.job.script_parameters["x"] = bad
        code, details = await code_and_details(cluster.jobs.CreateJob(request))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("script_parameters"), details
    deep = create_job(script="s", repository="r", script_version="v")
    deep.job.script_parameters.CopyFrom(nested_struct(200))
    code, _ = await code_and_details(cluster.jobs.CreateJob(deep))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_grpc_long_uuid_is_invalid_argument(cluster: Cluster) -> None:
    code, details = await code_and_details(cluster.jobs.GetJob(JS.GetJobRequest(uuid="a" * 10000)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("uuid:") and len(details) < 2000
