"""Arvados JSON: every attribute, nulls for unset ones, numbers as numbers, Arvados's times."""

from __future__ import annotations

import json

from google.protobuf.timestamp_pb2 import Timestamp
from jobtask.gateway.naming import enum_prefix, enum_wire_name, uuid_infix
from jobtask.gateway.rendering import dumps, format_timestamp, render, select_attributes
from jobtask.v1 import job_pb2, job_service_pb2, job_task_pb2, task_service_pb2, watch_pb2


def test_every_field_present_with_nulls_for_unset_ones() -> None:
    rendered = render(job_pb2.Job(uuid="zzzzz-8i9sb-000000000000001"))
    assert set(rendered) == {f.name for f in job_pb2.Job.DESCRIPTOR.fields}
    assert rendered["uuid"] == "zzzzz-8i9sb-000000000000001"
    assert rendered["priority"] == 0 and rendered["running"] is False and rendered["script"] == ""
    assert rendered["success"] is None and rendered["output"] is None  # optional, unset
    assert rendered["created_at"] is None and rendered["tasks_summary"] is None  # messages


def test_int64_is_a_json_number_and_structs_are_native() -> None:
    task = job_task_pb2.JobTask(qsequence=2**40, progress=0.25)
    task.parameters.update({"input": "f", "n": 3, "list": [1, "a", None]})
    rendered = json.loads(dumps(render(task)))
    assert rendered["qsequence"] == 2**40
    assert rendered["progress"] == 0.25
    assert rendered["parameters"] == {"input": "f", "n": 3, "list": [1, "a", None]}
    assert isinstance(rendered["parameters"]["n"], int)


def test_enums_are_hyphenated_without_their_prefix() -> None:
    assert render(job_pb2.Job(status=job_pb2.JOB_STATUS_CANCEL_REQUESTED))["status"] == (
        "cancel-requested"
    )
    assert (
        render(job_task_pb2.JobTask(status=job_task_pb2.TASK_STATUS_SOFT_FAILED))["status"]
        == "soft-failed"
    )
    assert enum_prefix(watch_pb2.WatchEventType.DESCRIPTOR) == "WATCH_EVENT_TYPE_"
    names = [enum_wire_name(v) for v in job_pb2.JobStatus.DESCRIPTOR.values]
    assert "under-construction" in names and "pause-requested" in names


def test_timestamps_in_arvados_format() -> None:
    ts = Timestamp()
    ts.FromNanoseconds(1_478_641_104_124_834_000)
    assert format_timestamp(ts) == "2016-11-08T21:38:24.124834000Z"
    ts = Timestamp(seconds=1_543_968_000)
    assert format_timestamp(ts) == "2018-12-05T00:00:00.000000000Z"


def test_list_envelope_and_select() -> None:
    response = job_service_pb2.ListJobsResponse(
        kind="arvados#jobList", limit=100, items=[job_pb2.Job(uuid="u", kind="arvados#job")]
    )
    rendered = render(response)
    # items_available unset (count=none): omitted, as Arvados does.
    assert set(rendered) == {"kind", "etag", "self_link", "offset", "limit", "items"}
    item = rendered["items"][0]
    assert select_attributes(item, ["uuid", "state"]) == {
        "uuid": "u",
        "state": "",
        "kind": "arvados#job",
    }
    tasks = render(task_service_pb2.ListTasksResponse(items_available=0))
    assert tasks["items_available"] == 0


def test_uuid_infixes_follow_arvados_formula() -> None:
    assert uuid_infix("Job") == "8i9sb"
    assert uuid_infix("JobTask") == "ot0gb"
    assert uuid_infix("User") == "tpzed"
