"""Every from→to pair of both status tables: allowed exactly when the seed or a documented
extension lists it."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from jobtask.domain.errors import FailedPrecondition
from jobtask.domain.statuses import (
    JOB_EXTENSIONS,
    JOB_SEED,
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    TASK_EXTENSIONS,
    TASK_SEED,
    JobStatus,
    JobStatuses,
    TaskStatus,
    TaskStatuses,
    check_job_move,
    check_task_move,
    job_can_move,
    task_can_move,
)

J, T = JobStatus, TaskStatus

# Seed 002, written out again here by hand so a change to the module cannot pass silently.
SEED_JOB_ROWS = {
    "under-construction": {"queued", "active"},
    "queued": {"active", "canceled"},
    "active": {"completed", "canceled", "failed"},
    "completed": {"queued"},
    "failed": {"queued", "canceled"},
    "cancel-requested": {"canceled"},
    "canceled": {"queued"},
    "requeueing": {"queued"},
    "paused": set(),
}
SEED_TASK_ROWS = {
    "queued": {"active", "canceled"},
    "active": {"completed", "canceled", "failed", "soft-failed"},
    "completed": {"queued"},
    "soft-failed": {"queued", "completed", "failed", "canceled"},
    "failed": {"queued", "canceled"},
    "canceled": {"queued"},
    "paused": set(),
}


def test_seed_tables_are_the_seed() -> None:
    for old, news in SEED_JOB_ROWS.items():
        assert {s.value for s in JOB_SEED[J(old)]} == news
    for old, news in SEED_TASK_ROWS.items():
        assert {s.value for s in TASK_SEED[T(old)]} == news


def test_every_extension_has_a_reason_and_is_new() -> None:
    for (old, new), reason in JOB_EXTENSIONS.items():
        assert reason and new not in JOB_SEED[old]
    for (told, tnew), reason in TASK_EXTENSIONS.items():
        assert reason and tnew not in TASK_SEED[told]


@pytest.mark.parametrize(("old", "new"), list(itertools.product(J, J)))
def test_job_pair(old: JobStatus, new: JobStatus) -> None:
    expected = new in JOB_SEED[old] or (old, new) in JOB_EXTENSIONS
    assert job_can_move(old, new) is expected
    if expected:
        check_job_move(old, new)
    else:
        with pytest.raises(FailedPrecondition) as err:
            check_job_move(old, new)
        assert f"from {old} to {new}" in err.value.message


@pytest.mark.parametrize(("old", "new"), list(itertools.product(T, T)))
def test_task_pair(old: TaskStatus, new: TaskStatus) -> None:
    expected = new in TASK_SEED[old] or (old, new) in TASK_EXTENSIONS
    assert task_can_move(old, new) is expected
    if expected:
        check_task_move(old, new)
    else:
        with pytest.raises(FailedPrecondition) as err:
            check_task_move(old, new)
        assert f"from {old} to {new}" in err.value.message


def test_terminal_statuses_only_leave_by_requeue() -> None:
    for status in (J.COMPLETED, J.CANCELED):
        assert {s for s in J if job_can_move(status, s)} <= {J.QUEUED, J.REQUEUEING}


def _job_state(started_at: object) -> Any:
    """A job's row as job_on_enter reads it (jobtask.domain.derived.JobState)."""
    from types import SimpleNamespace

    return SimpleNamespace(started_at=started_at, is_locked_by_uuid=None, cancelled_at=None)


def test_a_job_canceled_before_it_started_never_shows_running() -> None:
    """Found by tests/chaos/test_properties.py: cancel of a queued job passed through
    cancel-requested stored as state Running, running=true, with no started_at."""
    import datetime as dt

    from jobtask.domain.derived import job_on_enter

    now = dt.datetime.now(dt.UTC)
    common: dict[str, Any] = {
        "now": now,
        "user_uuid": None,
        "client_uuid": None,
        "locker_uuid": "x",
    }
    never = job_on_enter(JobStatus.CANCEL_REQUESTED, JobStatus.QUEUED, _job_state(None), **common)
    assert (never["state"], never["running"]) == ("Queued", False)
    started = job_on_enter(JobStatus.CANCEL_REQUESTED, JobStatus.ACTIVE, _job_state(now), **common)
    assert (started["state"], started["running"]) == ("Running", True)


@pytest.mark.parametrize("previous", sorted(JOB_TERMINAL, key=str))
def test_a_job_leaving_an_end_for_a_move_under_way_is_not_finished(previous: JobStatus) -> None:
    """Found by tests/chaos/test_properties.py: a failed job asked to cancel was stored in
    cancel-requested with the failure's finished_at; only an end has one."""
    import datetime as dt

    from jobtask.domain.derived import job_on_enter

    now = dt.datetime.now(dt.UTC)
    common: dict[str, Any] = {
        "now": now,
        "user_uuid": None,
        "client_uuid": None,
        "locker_uuid": "x",
    }
    for new in JOB_TRANSITIONS[previous]:
        changes = job_on_enter(new, previous, _job_state(now), **common)
        if new in JOB_TERMINAL:
            assert changes["finished_at"] == now, new
        else:
            assert changes["finished_at"] is None, new


def test_plain_member_classes_hold_every_member_itself() -> None:
    # The hot paths test `status is J.X` with these classes' attributes: a member left out,
    # misnamed or a copy (an equal str, not the member) would make those tests lie.
    for plain, enum_class in ((JobStatuses, JobStatus), (TaskStatuses, TaskStatus)):
        held = {name: value for name, value in vars(plain).items() if name.isupper()}
        assert held.keys() == enum_class.__members__.keys()
        for name, member in enum_class.__members__.items():
            assert held[name] is member
