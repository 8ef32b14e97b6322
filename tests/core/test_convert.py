"""Rows as messages (jobtask.server.convert): job_pb and task_pb build each message in one
constructor call plus its times and structs; the message must be the one a field by field
copy of the row makes (the published API's content), set fields, presence and bytes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from jobtask.domain.resources import CONSTRAINT_KEYS
from jobtask.server.convert import (
    JOB_COPY,
    JOB_STATUS_TO_PB,
    TASK_COPY,
    TASK_STATUS_TO_PB,
    blocklist_pb,
    failure_pb,
    job_pb,
    task_pb,
)
from jobtask.store.rows import JobRow, TaskRow, job_row, task_row
from jobtask.v1 import job_pb2, job_task_pb2

from tests.core.test_rows import NOW, _job_columns, _task_columns

# The fields copied as they are (the API's list, which this change left as it was).
_JOB_FIELDS = JOB_COPY
_TASK_FIELDS = TASK_COPY


def _copy(msg: Message, row: Any, names: list[str]) -> None:
    """Each field set on its own, as the API defines it: None left unset, a time as
    Timestamp.FromDatetime sets it (naive: UTC)."""
    for name in names:
        value = getattr(row, name)
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            ts = Timestamp()
            ts.FromDatetime(value)
            getattr(msg, name).CopyFrom(ts)
        else:
            setattr(msg, name, value)


def _struct(value: dict[str, Any] | None) -> Struct:
    s = Struct()
    s.update(value or {})
    return s


def _constraints(value: dict[str, Any] | None) -> job_pb2.RuntimeConstraints:
    rc = job_pb2.RuntimeConstraints()
    for key in CONSTRAINT_KEYS:
        if value and value.get(key) is not None:
            setattr(rc, key, int(value[key]))
    return rc


def _job_expected(job: JobRow) -> job_pb2.Job:
    msg = job_pb2.Job(kind="arvados#job", href=f"/jobs/{job.uuid}")
    _copy(msg, job, _JOB_FIELDS)
    msg.script_name = job.script
    msg.script_parameters.CopyFrom(_struct(job.script_parameters))
    msg.runtime_constraints.CopyFrom(_constraints(job.runtime_constraints))
    msg.resource_limits.CopyFrom(_constraints(job.runtime_constraints))
    msg.tasks_summary.CopyFrom(job_pb2.TasksSummary(**job.tasks_summary))
    msg.status = JOB_STATUS_TO_PB[job.status]
    if job.failure_reason:
        msg.failure_reason.CopyFrom(failure_pb(job.failure_reason))
    msg.blocklist.extend(blocklist_pb(job.blocklist))
    return msg


def _task_expected(task: TaskRow) -> job_task_pb2.JobTask:
    msg = job_task_pb2.JobTask(kind="arvados#jobTask", href=f"/job_tasks/{task.uuid}")
    _copy(msg, task, _TASK_FIELDS)
    msg.parameters.CopyFrom(_struct(task.parameters))
    msg.runtime_constraints.CopyFrom(_constraints(task.runtime_constraints))
    msg.status = TASK_STATUS_TO_PB[task.status]
    if task.failure_reason:
        msg.failure_reason.CopyFrom(failure_pb(task.failure_reason))
    return msg


def _same(got: Message, expected: Message) -> None:
    assert got == expected
    assert [f.name for f, _ in got.ListFields()] == [f.name for f, _ in expected.ListFields()]
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"blocklist": None, "script_parameters": {}, "runtime_constraints": {}},
        {"runtime_constraints": {"min_nodes": 2, "max_tasks_per_node": None}},
        {"failure_reason": {"rule": "retry-limit", "message": "m", "exit_code": 3}},
        {"success": False, "running": False, "output": "", "cancelled_at": dt.datetime(2020, 1, 1)},
        {"created_at": dt.datetime(1969, 12, 31, 23, 59, 59, 999999), "priority": 0},
        {"submit_id": "", "repository": "r", "status": "queued", "state": "Queued", "n_queued": 0},
    ],
)
def test_a_job_message_is_the_field_by_field_copy(changes: dict[str, Any]) -> None:
    job = job_row({**_job_columns(), **changes})
    _same(job_pb(job), _job_expected(job))


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"parameters": {}, "runtime_constraints": {}},
        {"parameters": {"x": [1, None, {"a": 1.5}]}},
        {"failure_reason": {"rule": "incomplete", "signal": 9}},
        {"success": True, "output": "abc", "progress": 0.0, "worker_id": None},
        {"runnable_after": NOW, "failed_at": dt.datetime(2026, 1, 1), "started_at": None},
        {"status": "queued", "attempt": 0, "failed_count": 0, "sequence": 0},
    ],
)
def test_a_task_message_is_the_field_by_field_copy(changes: dict[str, Any]) -> None:
    task = task_row({**_task_columns(), **changes})
    _same(task_pb(task), _task_expected(task))


def test_assignments_built_in_place_are_the_messages_built_apart() -> None:
    from jobtask.manager.tasks import Claim
    from jobtask.server.assignments import assignments_pb
    from jobtask.server.convert import stamp
    from jobtask.v1 import task_service_pb2

    one = job_row(_job_columns())
    other = job_row({**_job_columns(), "id": 8, "uuid": "zzzzz-8i9sb-000000000000008"})
    expires = NOW + dt.timedelta(seconds=30)
    claims = [
        Claim(
            task_row({**_task_columns(), "id": i, "job_id": job.id}), job, f"t{i}", f"l{i}", expires
        )
        for i, job in ((12, one), (13, other), (14, one))
    ]
    expected = []
    for claim in claims:
        a = task_service_pb2.TaskAssignment(task=task_pb(claim.task), job=job_pb(claim.job))
        a.task_token = claim.token
        a.lease.lease_id = claim.lease_id
        stamp(a.lease.expires_at, claim.lease_expires_at)
        a.lease.ttl.FromNanoseconds(int(12.5 * 1e9))
        expected.append(a)
    answer = task_service_pb2.WorkerSessionResponse()
    assignments_pb(claims, 12.5, answer.assignments)
    got = list(answer.assignments)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        _same(g, e)


def test_lists_built_in_place_are_the_messages_built_apart() -> None:
    from jobtask.server.job_messages import add_jobs
    from jobtask.server.task_messages import add_tasks
    from jobtask.v1 import job_service_pb2, task_service_pb2

    jobs = [job_row(_job_columns()), job_row({**_job_columns(), "blocklist": None, "id": 8})]
    tasks = [
        task_row(_task_columns()),
        task_row({**_task_columns(), "parameters": {}, "failure_reason": {"rule": "incomplete"}}),
    ]
    got_jobs = job_service_pb2.BatchCreateJobsResponse()
    add_jobs(got_jobs.jobs, jobs)
    got_tasks = task_service_pb2.BatchCreateTasksResponse()
    add_tasks(got_tasks.job_tasks, tasks)
    _same(got_jobs, job_service_pb2.BatchCreateJobsResponse(jobs=[job_pb(j) for j in jobs]))
    _same(
        got_tasks,
        task_service_pb2.BatchCreateTasksResponse(job_tasks=[task_pb(t) for t in tasks]),
    )


@pytest.mark.parametrize("kind", ["job_changed", "task_created", "task_changed", "progress"])
def test_a_watch_event_built_in_place_is_the_one_built_apart(kind: str) -> None:
    """event_pb builds a row's job or task inside the event: the message the event's fields
    set one by one and the resource's message copied in make."""
    from jobtask.server.convert import timestamp
    from jobtask.server.watch import _TYPES, event_pb
    from jobtask.store import feed
    from jobtask.store.rows import job_from_json, task_from_json, to_json
    from jobtask.v1 import watch_pb2

    job = job_row(_job_columns())
    task = task_row(_task_columns())
    types = {
        "job_changed": feed.JOB_CHANGED,
        "task_created": feed.TASK_CREATED,
        "task_changed": feed.TASK_CHANGED,
        "progress": feed.TASK_PROGRESS,
    }
    payload: dict[str, Any] = {"progress": 0.25}
    if kind == "job_changed":
        payload = to_json(job)
    elif kind != "progress":
        payload = to_json(task)
    row = {
        "type": types[kind],
        "seq": 41,
        "job_uuid": job.uuid,
        "task_uuid": None if kind == "job_changed" else task.uuid,
        "created_at": NOW,
        "payload": payload,
    }
    expected = watch_pb2.WatchEvent(
        seq=41,
        type=_TYPES[types[kind]],
        job_uuid=job.uuid,
        task_uuid="" if kind == "job_changed" else task.uuid,
    )
    expected.time.CopyFrom(timestamp(NOW))
    if kind == "job_changed":
        expected.job.CopyFrom(_job_expected(job_from_json(payload)))
    elif kind == "progress":
        expected.progress = 0.25
    else:
        expected.task.CopyFrom(_task_expected(task_from_json(payload)))
    _same(event_pb(row), expected)


def _values() -> list[Any]:
    """Parameters as a caller may send them: every kind of Value, nested."""
    return [
        {},
        {"input": "x"},
        {"n": 3, "f": 1.5, "neg": -0.0, "big": 2.0**60, "t": True, "no": False, "null": None},
        {"nested": {"a": [1, "b", None, {"c": []}], "d": {}}, "empty": "", "list": []},
        {"é": "\x00ü", "deep": {"a": {"b": {"c": {"d": [[[1]]]}}}}},
    ]


@pytest.mark.parametrize("value", _values())
def test_struct_values_are_the_json_printers(value: dict[str, Any]) -> None:
    """changes_from reads Structs and ListValues without json_format's generic printer: the
    same values, of the same types, in the same order."""
    from google.protobuf import json_format
    from google.protobuf.struct_pb2 import ListValue
    from jobtask.server.convert import changes_from, list_value, plain_struct

    s = Struct()
    s.update(value)
    expected = json_format.MessageToDict(s)
    got = plain_struct(s)
    assert got == expected
    assert repr(got) == repr(expected)  # types (int against float) and key order too
    items = ListValue()
    items.extend([value, *value.values()])  # type: ignore[list-item]  # dicts are values
    assert repr(list_value(items)) == repr(json_format.MessageToDict(items))
    msg = job_task_pb2.JobTask(job_uuid="zzzzz-8i9sb-000000000000007", sequence=2)
    msg.parameters.CopyFrom(s)
    # (A map's order is its own: the copy's, printed either way.)
    sent = json_format.MessageToDict(msg.parameters)
    assert repr(changes_from(msg, None)) == repr(
        {"job_uuid": msg.job_uuid, "sequence": 2, "parameters": sent}
    )
    assert changes_from(msg, ["parameters", "output"]) == {"parameters": sent, "output": None}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_number_is_refused_where_json_has_none(bad: float) -> None:
    from jobtask.domain.errors import InvalidArgument
    from jobtask.server.convert import changes_from

    msg = job_task_pb2.JobTask()
    msg.parameters.update({"ok": 1, "x": [{"y": bad}]})
    with pytest.raises(InvalidArgument, match="finite"):
        changes_from(msg, None)


def test_set_fields_of_every_kind_are_read_as_before() -> None:
    """changes_from's fields set: scalars as listed, enums (0 as None), times, structs,
    constraints -- what _field_value reads for each name."""
    from jobtask.server.convert import _field_value, changes_from

    msg = job_task_pb2.JobTask(
        uuid="zzzzz-ot0gb-000000000000012",
        sequence=0,
        progress=0.25,
        success=False,
        output="",
        status=job_task_pb2.TASK_STATUS_QUEUED,
        runtime_constraints={"min_ram_per_node": 5},
    )
    msg.created_at.FromDatetime(NOW)
    msg.parameters.update({"a": 1})
    got = changes_from(msg, None)
    assert got == {f.name: _field_value(msg, f.name) for f, _ in msg.ListFields()}
    assert got["success"] is False and got["output"] == "" and got["status"] == "queued"
    assert got["created_at"] == NOW and got["runtime_constraints"] == {"min_ram_per_node": 5}
