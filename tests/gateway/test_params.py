"""Request building: every encoding Arvados clients use, coerced by the field descriptors."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from google.protobuf import json_format
from jobtask.gateway.errors import ApiError
from jobtask.gateway.params import HttpInput, build_request
from jobtask.gateway.rendering import render
from jobtask.gateway.routing import Binding, RouteTable, load_services
from jobtask.gateway.server import SERVICE_MODULES
from jobtask.v1 import job_pb2, job_service_pb2, job_task_pb2, task_service_pb2

ROUTES = RouteTable(load_services(SERVICE_MODULES))


def binding(method: str, path: str) -> tuple[Binding, dict[str, str]]:
    match = ROUTES.match(method, path)
    assert match.binding is not None
    return match.binding, match.variables


def build(method: str, path: str, **kwargs: Any) -> Any:
    b, variables = binding(method, path)
    return build_request(b, HttpInput(path_variables=variables, **kwargs))


def list_jobs(**kwargs: Any) -> job_service_pb2.ListJobsRequest:
    request = build("GET", "/arvados/v1/jobs", **kwargs)
    assert isinstance(request, job_service_pb2.ListJobsRequest)
    return request


def test_filters_as_a_json_string_and_as_native_json() -> None:
    filters = [["state", "=", "Queued"], ["created_at", ">", "2019-01-01T00:00:00Z"]]
    from_query = list_jobs(query=[("filters", json.dumps(filters))])
    from_body = list_jobs(json_body={"filters": filters})
    parsed: Any = json_format.MessageToDict(from_query.filters)  # a ListValue is a list
    assert parsed == filters
    assert from_query == from_body


@pytest.mark.parametrize(
    "params",
    [
        [("order", '["created_at desc", "uuid"]')],
        [("order", "created_at desc,uuid")],
        [("order", "created_at desc"), ("order", "uuid")],
    ],
)
def test_order_as_json_array_comma_string_or_repeated(params: list[tuple[str, str]]) -> None:
    assert list(list_jobs(query=params).order) == ["created_at desc", "uuid"]


def test_select_and_scalars_from_strings() -> None:
    request = list_jobs(
        query=[("select", "uuid,state"), ("offset", "5"), ("count", "none"), ("distinct", "t")]
    )
    assert list(request.select) == ["uuid", "state"]
    assert request.offset == 5 and request.count == "none" and request.distinct is True


def test_large_limits_are_passed_on_for_the_server_to_clamp() -> None:
    assert list_jobs(query=[("limit", str(sys.maxsize))]).limit == sys.maxsize
    assert list_jobs(query=[("limit", str(10**30))]).limit == 2**63 - 1
    assert not list_jobs(query=[("limit", "")]).HasField("limit")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("1", True),
        ("yes", True),
        ("t", True),
        ("false", False),
        ("0", False),
        ("f", False),
        ("no", False),
    ],
)
def test_booleans(text: str, value: bool) -> None:
    assert list_jobs(query=[("distinct", text)]).distinct is value


def test_bad_values_are_422_naming_the_parameter() -> None:
    with pytest.raises(ApiError) as err:
        list_jobs(query=[("limit", "ten")])
    assert err.value.status == 422 and "limit" in err.value.errors[0]
    with pytest.raises(ApiError) as err:
        list_jobs(query=[("filters", "[[")])
    assert "filters" in err.value.errors[0]
    with pytest.raises(ApiError) as err:
        list_jobs(query=[("where", "[1]")])
    assert "where" in err.value.errors[0]
    with pytest.raises(ApiError) as err:
        list_jobs(query=[("distinct", "maybe")])
    assert "distinct" in err.value.errors[0]


def test_arvados_noise_is_ignored() -> None:
    request = list_jobs(
        query=[
            ("alt", "json"),
            ("api_token", "x"),
            ("cluster_id", "zzzzz"),
            ("reader_tokens", "[]"),
            ("_method", "GET"),
            ("no_such_thing", "1"),
        ]
    )
    assert request == job_service_pb2.ListJobsRequest()


JOB = {"script": "hash.py", "script_version": "master", "script_parameters": {"input": "x"}}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json_body": {"job": JOB}},
        {"json_body": JOB},  # bare attributes, as the Python SDK sends them
        {"json_body": {"job": json.dumps(JOB)}},
        {"form": [("job", json.dumps(JOB))]},  # the Perl SDK
        {"query": [("job", json.dumps(JOB))]},
    ],
)
def test_create_body_forms(kwargs: dict[str, Any]) -> None:
    request = build("POST", "/arvados/v1/jobs", **kwargs)
    assert isinstance(request, job_service_pb2.CreateJobRequest)
    assert request.job.script == "hash.py"
    assert json_format.MessageToDict(request.job.script_parameters) == {"input": "x"}


def test_request_parameters_next_to_bare_attributes() -> None:
    request = build(
        "POST",
        "/arvados/v1/jobs",
        query=[("find_or_create", "true"), ("alt", "json")],
        json_body={**JOB, "allow_duplicate": True, "kind": "arvados#job", "etag": "e"},
    )
    assert request.find_or_create is True and request.allow_duplicate is True


def test_hash_attributes_as_json_strings() -> None:
    request = build(
        "POST",
        "/arvados/v1/jobs",
        json_body={"job": {**JOB, "script_parameters": '{"input": "y"}'}},
    )
    assert json_format.MessageToDict(request.job.script_parameters) == {"input": "y"}


def test_unknown_attributes_are_422_naming_them() -> None:
    for body in ({"job": {**JOB, "badattr": 1}}, {**JOB, "badattr": 1}):
        with pytest.raises(ApiError) as err:
            build("POST", "/arvados/v1/jobs", json_body=body)
        assert err.value.status == 422 and "badattr" in err.value.errors[0]
    with pytest.raises(ApiError) as err:
        build("POST", "/arvados/v1/jobs", json_body={"job": [1]})
    assert "No job hash" in err.value.errors[0]


def test_update_mask_is_the_attributes_sent() -> None:
    request = build(
        "PUT",
        "/arvados/v1/job_tasks/zzzzz-ot0gb-000000000000001",
        json_body={
            "output": "d41d8cd98f00b204e9800998ecf8427e+0",
            "success": True,
            "progress": 1.0,
            "kind": "arvados#jobTask",
            "etag": "x",
            "href": "/h",
        },
    )
    assert isinstance(request, task_service_pb2.UpdateTaskRequest)
    assert request.uuid == "zzzzz-ot0gb-000000000000001"
    assert list(request.update_mask.paths) == ["output", "success", "progress"]
    assert request.job_task.success is True and request.job_task.progress == 1.0


def test_null_clears_an_attribute_and_is_in_the_mask() -> None:
    request = build("PATCH", "/arvados/v1/job_tasks/t", json_body={"job_task": {"output": None}})
    assert list(request.update_mask.paths) == ["output"]
    assert not request.job_task.HasField("output")


def test_a_rendered_record_sent_back_whole_parses() -> None:
    """The Perl SDK's save sends the whole record back as job_task=<JSON>."""
    task = job_task_pb2.JobTask(
        uuid="zzzzz-ot0gb-000000000000001",
        kind="arvados#jobTask",
        sequence=1,
        progress=0.5,
        status=job_task_pb2.TASK_STATUS_SOFT_FAILED,
    )
    task.created_at.FromNanoseconds(1_543_968_000_123_456_789)
    task.parameters.update({"input": "f", "n": 3})
    record = render(task)
    request = build(
        "PUT", f"/arvados/v1/job_tasks/{task.uuid}", form=[("job_task", json.dumps(record))]
    )
    expected = job_task_pb2.JobTask()
    expected.CopyFrom(task)
    expected.kind = ""  # kind, etag and href are dropped
    assert request.job_task == expected
    assert "created_at" in request.update_mask.paths and "kind" not in request.update_mask.paths


def test_enum_attributes_accept_wire_and_proto_names() -> None:
    for name in ("cancel-requested", "CANCEL_REQUESTED", "JOB_STATUS_CANCEL_REQUESTED"):
        request = build("PUT", "/arvados/v1/jobs/j", json_body={"status": name})
        assert request.job.status == job_pb2.JOB_STATUS_CANCEL_REQUESTED
    with pytest.raises(ApiError):
        build("PUT", "/arvados/v1/jobs/j", json_body={"status": "sleeping"})


def test_watch_resumes_from_last_event_id_over_the_query() -> None:
    request = build(
        "GET", "/arvados/v1/jobs/j/watch", query=[("after_seq", "3")], last_event_id="17"
    )
    assert request.uuid == "j" and request.after_seq == 17
    assert build("GET", "/arvados/v1/jobs/j/watch", query=[("after_seq", "3")]).after_seq == 3


def test_body_star_and_dotted_query_parameters() -> None:
    request = build(
        "POST",
        "/arvados/v1/job_tasks/claim",
        json_body={"worker": {"worker_id": "w1", "free_slots": "2"}, "wait": 1.5, "max_tasks": 2},
    )
    assert request.worker.worker_id == "w1" and request.worker.free_slots == 2
    assert request.wait.seconds == 1 and request.wait.nanos == 500_000_000
    request = build(
        "POST", "/arvados/v1/job_tasks/claim", query=[("worker.node_name", "n1"), ("wait", "2s")]
    )
    assert request.worker.node_name == "n1" and request.wait.seconds == 2


def test_path_variables_win_over_the_body() -> None:
    request = build(
        "POST",
        "/arvados/v1/job_tasks/t1/exit",
        json_body={"uuid": "other", "exit_code": 0, "lease_id": "l"},
    )
    assert request.uuid == "t1" and request.exit_code == 0
