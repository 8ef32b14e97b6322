"""JobMessages: each job's message, copied from the one before and changed where its row
differs, is the message convert.job_pb builds from the row (the same bytes), whichever
attributes differ and in whichever order the rows come."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from jobtask.server.convert import job_pb
from jobtask.server.job_messages import SETTERS, UNSENT, JobMessages, add_jobs
from jobtask.store.rows import JobRow, job_row
from jobtask.v1 import job_service_pb2

from tests.core.message_cases import (
    assert_each_built_alone,
    assert_pairs_built_alone,
    moving_rows,
    serialized,
)
from tests.core.test_rows import NOW, _job_columns

LATER = NOW + dt.timedelta(seconds=7, microseconds=250)
ENTRY = {"worker_id": "w", "failed_tasks": 3, "added_at": NOW.isoformat()}

# For each attribute a job's message is made of, values to move it through: each another
# message field (or none: an optional field left unset), some equal to Python but not to
# protobuf (1 and True; a Struct's 1 and True).
_VALUES: dict[str, list[Any]] = {
    "uuid": ["zzzzz-8i9sb-000000000000013", "zzzzz-8i9sb-000000000000014"],
    "version": [4, 1],
    "owner_uuid": ["zzzzz-tpzed-000000000000002"],
    "created_at": [LATER],
    "modified_at": [LATER, NOW],
    "modified_by_client_uuid": ["zzzzz-ozdt8-000000000000001", None],
    "modified_by_user_uuid": ["zzzzz-tpzed-000000000000003", None],
    "submit_id": ["s1", "", None],
    "priority": [0, 5],
    "script": ["other", ""],
    "script_parameters": [{}, {"input": "y"}, {"n": 1}, {"n": True}, {"n": [1, {"a": None}]}],
    "script_version": ["v1", ""],
    "repository": ["repo", "", None],
    "runtime_constraints": [{}, {"min_ram_mb_per_node": 2}, {"min_cores_per_node": 4}],
    "status": ["queued", "completed", "failed", "canceled"],
    "state": ["Queued", "Complete"],
    "running": [False, True],
    "success": [True, False, None],
    "cancelled_by_client_uuid": ["zzzzz-ozdt8-000000000000002", None],
    "cancelled_by_user_uuid": ["zzzzz-tpzed-000000000000004", None],
    "cancelled_at": [LATER, None],
    "started_at": [NOW, LATER, None],
    "finished_at": [LATER, None],
    "is_locked_by_uuid": ["zzzzz-tpzed-000000000000005", None],
    "output": ["", "out", None],
    "log": ["log", None],
    "n_queued": [0, 9],
    "n_active": [0, 3],
    "n_completed": [0, 7],
    "n_soft_failed": [0, 2],
    "n_failed": [0, 1],
    "n_paused": [0, 6],
    "failure_reason": [{"rule": "incomplete"}, None, {"rule": "incomplete", "exit_code": 3}],
    "blocklist": [None, [ENTRY], [ENTRY, {**ENTRY, "worker_id": "v", "failed_tasks": 1}]],
}


def _row(**changes: Any) -> JobRow:
    return job_row({**_job_columns(), **changes})


def test_every_attribute_of_a_job_is_set_or_known_unsent() -> None:
    # An attribute the copy would not set would leave the last job's value in the message.
    names = {f.name for f in dataclasses.fields(JobRow)}
    assert set(_VALUES) == set(SETTERS)
    assert set(SETTERS) | UNSENT == names
    assert not set(SETTERS) & UNSENT


def test_each_message_is_the_one_built_from_its_row() -> None:
    rows = moving_rows(_row, _VALUES)
    got = job_service_pb2.BatchCreateJobsResponse()
    add_jobs(got.jobs, rows)
    assert_each_built_alone(got.jobs, rows, job_pb)


def test_unsent_attributes_change_no_message() -> None:
    # What UNSENT lists must indeed be in no field: else a sibling's value would stay.
    base = _row()
    for name, value in {
        "id": 99,
        "submit_digest": "e" * 64,
        "identity": "x",
        "n_canceled": 4,
    }.items():
        assert serialized(job_pb(_row(**{name: value}))) == serialized(job_pb(base)), name


@pytest.mark.parametrize("name", sorted(_VALUES))
def test_a_message_after_any_other_is_its_own(name: str) -> None:
    # Every pair of values of the attribute, in both orders, each message filled after the
    # other's.
    options = [_job_columns().get(name), *_VALUES[name]]
    pairs = [(_row(**{name: a}), _row(**{name: b})) for a in options for b in options]
    assert_pairs_built_alone(
        pairs, JobMessages, lambda: job_service_pb2.BatchCreateJobsResponse().jobs, job_pb
    )
