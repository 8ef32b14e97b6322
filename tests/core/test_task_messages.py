"""TaskMessages: each task's message, copied from the one before and changed where its row
differs, is the message convert.task_pb builds from the row (the same bytes), whichever
attributes differ and in whichever order the rows come."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from jobtask.server.convert import task_pb
from jobtask.server.task_messages import _SETTERS, SelectedTasks, TaskMessages, add_tasks
from jobtask.store.rows import TaskRow, task_row
from jobtask.v1 import job_task_pb2, task_service_pb2

from tests.core.message_cases import (
    assert_each_built_alone,
    assert_pairs_built_alone,
    moving_rows,
    serialized,
)
from tests.core.test_rows import NOW, _task_columns

LATER = NOW + dt.timedelta(seconds=7, microseconds=250)

# For each attribute a task's message is made of, values to move it through: each another
# message field (or none: an optional field left unset), some equal to Python but not to
# protobuf (1 and True, 0.0 and -0.0; a Struct's 1 and True).
_VALUES: dict[str, list[Any]] = {
    "uuid": ["zzzzz-ot0gb-000000000000013", "zzzzz-ot0gb-000000000000014"],
    "version": [3, 1],
    "id": [13, 1],
    "status": ["queued", "completed", "failed"],
    "parameters": [{}, {"input": "y"}, {"n": 1}, {"n": True}, {"n": [1, {"a": None}]}],
    "runtime_constraints": [{}, {"min_ram_mb_per_node": 2}, {"min_cores_per_node": 4}],
    "failure_reason": [{"rule": "incomplete"}, None, {"rule": "incomplete", "exit_code": 3}],
    "owner_uuid": ["zzzzz-tpzed-000000000000002"],
    "created_at": [LATER],
    "modified_at": [LATER, NOW],
    "modified_by_client_uuid": ["zzzzz-ozdt8-000000000000001", None],
    "modified_by_user_uuid": ["zzzzz-tpzed-000000000000003", None],
    "job_uuid": ["zzzzz-8i9sb-000000000000008"],
    "sequence": [0, 5],
    "output": ["", "out", None],
    "progress": [0.0, -0.0, 1.0],
    "success": [True, False, None],
    "created_by_job_task_uuid": ["zzzzz-ot0gb-000000000000001", None],
    "failed_count": [0, 2],
    "failed_at": [LATER, None],
    "failed_log": ["", "why", None],
    "log": ["log", None],
    "started_at": [NOW, LATER, None],
    "finished_at": [LATER, None],
    "worker_id": ["", "w2", None],
    "node_name": ["n2", None],
    "attempt": [0, 3],
    "runnable_after": [LATER, None],
}


def _row(**changes: Any) -> TaskRow:
    return task_row({**_task_columns(), **changes})


def test_every_attribute_of_a_task_message_is_covered() -> None:
    # An attribute the copy would not set would leave the last task's value in the message.
    assert set(_VALUES) == set(_SETTERS)


def test_each_message_is_the_one_built_from_its_row() -> None:
    rows = moving_rows(_row, _VALUES)
    got = task_service_pb2.BatchCreateTasksResponse()
    add_tasks(got.job_tasks, rows)
    assert_each_built_alone(got.job_tasks, rows, task_pb)


@pytest.mark.parametrize("name", sorted(_VALUES))
def test_a_message_after_any_other_is_its_own(name: str) -> None:
    # Every pair of values of the attribute, in both orders, each message filled after the
    # other's.
    options = [_task_columns().get(name), *_VALUES[name]]
    pairs = [
        (_row(**{name: first}), _row(**{name: second}))
        for first in options
        for second in options
        if not (name in ("uuid", "version", "id") and (first is None or second is None))
    ]
    assert_pairs_built_alone(
        pairs,
        TaskMessages,
        lambda: task_service_pb2.BatchCreateTasksResponse().job_tasks,
        task_pb,
    )


def _trimmed(row: TaskRow, select: list[str]) -> job_task_pb2.JobTask:
    """The whole message with every field but the selected ones and `kind` cleared."""
    msg = task_pb(row)
    for field in msg.DESCRIPTOR.fields:
        if field.name not in {"kind", *select}:
            msg.ClearField(field.name)
    return msg


_FIELD_NAMES = sorted(f.name for f in job_task_pb2.JobTask.DESCRIPTOR.fields)


@pytest.mark.parametrize("name", _FIELD_NAMES)
def test_a_selected_field_is_the_whole_messages(name: str) -> None:
    """SelectedTasks, each field alone, through every row of the moves: the whole message
    with the other fields cleared (the same bytes) -- a field without a setter of its own
    fails here (KeyError), and so does one set wrong or, for the uuid, with href and etag."""
    rows = moving_rows(_row, _VALUES)
    got = task_service_pb2.BatchCreateTasksResponse()
    SelectedTasks([name]).add(got.job_tasks, rows)
    assert_each_built_alone(got.job_tasks, rows, lambda row: _trimmed(row, [name]))


def test_several_selected_fields_repeated_or_not_make_one_message_each() -> None:
    select = ["uuid", "status", "uuid", "parameters", "etag", "kind", "finished_at"]
    rows = moving_rows(_row, _VALUES)
    got = task_service_pb2.BatchCreateTasksResponse()
    SelectedTasks(select).add(got.job_tasks, rows)
    assert_each_built_alone(got.job_tasks, rows, lambda row: _trimmed(row, select))
    # fill(), into a message of its own (a session's decided task), makes the same.
    for msg, row in zip(got.job_tasks, rows, strict=True):
        alone = job_task_pb2.JobTask()
        SelectedTasks(select).fill(alone, row)
        assert serialized(alone) == serialized(msg)
