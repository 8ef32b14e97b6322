"""The completion rule, temporary failure and the retry limit, and the ripple tables."""

from __future__ import annotations

import pytest
from jobtask.domain.ripple import follow_up, on_enter
from jobtask.domain.rules import decide_exit, job_identity
from jobtask.domain.statuses import JobStatus, TaskStatus

J, T = JobStatus, TaskStatus


@pytest.mark.parametrize(
    ("progress", "success", "failed_count", "status", "temporary"),
    [
        (1.0, True, 0, T.COMPLETED, False),
        (0.5, True, 0, T.FAILED, False),  # success without progress=1.0 is not completion
        (1.0, False, 0, T.FAILED, False),  # success=false is a permanent failure
        (0.3, None, 0, T.SOFT_FAILED, True),  # ended undecided: temporary failure
        (1.0, None, 1, T.SOFT_FAILED, True),
        (0.3, None, 2, T.FAILED, True),  # the third failure reaches the default limit of 3
    ],
)
def test_decide_exit(
    progress: float, success: bool | None, failed_count: int, status: TaskStatus, temporary: bool
) -> None:
    decision = decide_exit(progress, success, failed_count)
    assert (decision.status, decision.temporary_failure) == (status, temporary)


def test_retry_limit_is_configurable() -> None:
    assert decide_exit(0, None, 0, retry_limit=1).status is T.FAILED
    assert decide_exit(0, None, 3, retry_limit=5).status is T.SOFT_FAILED


def test_identity_ignores_unset_constraints_and_key_order() -> None:
    a = job_identity("s", "v", {"a": 1, "b": 2}, {"min_nodes": None, "max_nodes": 2})
    b = job_identity("s", "v", {"b": 2, "a": 1}, {"max_nodes": 2})
    assert a == b
    assert a != job_identity("s", "v", {"a": 1}, {"max_nodes": 2})


def counts(**kw: int) -> dict[TaskStatus, int]:
    return {T(k.replace("_", "-")): v for k, v in kw.items()}


@pytest.mark.parametrize(
    ("job", "task_counts", "expected"),
    [
        (J.QUEUED, counts(active=1, queued=1), J.ACTIVE),
        (J.ACTIVE, counts(completed=3), J.COMPLETED),
        (J.ACTIVE, counts(completed=1, failed=1), J.FAILED),
        (J.ACTIVE, counts(completed=1, queued=1), None),
        (J.CANCEL_REQUESTED, counts(canceled=2, completed=1), J.CANCELED),
        (J.PAUSE_REQUESTED, counts(active=1, paused=2), None),
        (J.PAUSE_REQUESTED, counts(paused=2, completed=1), J.PAUSED),
        (J.PAUSE_REQUESTED, counts(completed=2), J.COMPLETED),
        (J.REQUEUEING, counts(queued=2), J.QUEUED),
        (J.COMPLETED, counts(completed=1, queued=1), J.QUEUED),
        (J.ACTIVE, counts(canceled=1, completed=1), J.CANCELED),
    ],
)
def test_follow_up(job: JobStatus, task_counts: dict[TaskStatus, int], expected: JobStatus) -> None:
    assert follow_up(job, task_counts) == expected


def test_on_enter() -> None:
    (cancel,) = on_enter(J.CANCEL_REQUESTED, J.ACTIVE)
    assert (
        cancel.target is T.CANCELED
        and T.ACTIVE in cancel.sources
        and T.COMPLETED not in cancel.sources
    )
    (requeue_all,) = on_enter(J.REQUEUEING, J.COMPLETED)
    assert T.COMPLETED in requeue_all.sources and requeue_all.reset_attempts
    (requeue_some,) = on_enter(J.REQUEUEING, J.FAILED)
    assert T.COMPLETED not in requeue_some.sources and T.FAILED in requeue_some.sources
    (pause,) = on_enter(J.PAUSE_REQUESTED, J.ACTIVE)
    assert pause.sources == {T.QUEUED, T.SOFT_FAILED} and pause.target is T.PAUSED
    (resume,) = on_enter(J.QUEUED, J.PAUSED)
    assert resume.sources == {T.PAUSED} and resume.target is T.QUEUED
    assert on_enter(J.COMPLETED, J.ACTIVE) == []
