"""The job and task status machines of Flamenco (seed 002), enforced by the server.

The seed's tables are the base. Where this module allows more, the extension is listed in
JOB_EXTENSIONS / TASK_EXTENSIONS with the reason, so the tables stay auditable: Flamenco's
own code needs these moves (it does not enforce a table at all; its web UI gates requests).
"""

from __future__ import annotations

import enum
from typing import Final, TypeVar

from jobtask.domain.errors import FailedPrecondition


class JobStatus(enum.StrEnum):
    UNDER_CONSTRUCTION = "under-construction"
    QUEUED = "queued"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCEL_REQUESTED = "cancel-requested"
    CANCELED = "canceled"
    REQUEUEING = "requeueing"
    PAUSED = "paused"
    PAUSE_REQUESTED = "pause-requested"


class TaskStatus(enum.StrEnum):
    QUEUED = "queued"
    ACTIVE = "active"
    COMPLETED = "completed"
    SOFT_FAILED = "soft-failed"
    FAILED = "failed"
    CANCELED = "canceled"
    PAUSED = "paused"


J, T = JobStatus, TaskStatus


class JobStatuses:
    """JobStatus's members again, as a plain class's attributes, for the paths that settle
    a job (~100 member lookups a one-task job drained; ripple.follow_up alone ~45). On
    Python 3.11 every attribute of an enum class is looked up through a Python-level slot
    (EnumType defines __getattr__; 3.12 dropped it): `JobStatus.QUEUED` costs ~220 ns on the
    2-core machine, `JobStatuses.QUEUED` ~70. The very same objects: `is` holds."""

    UNDER_CONSTRUCTION: Final = JobStatus.UNDER_CONSTRUCTION
    QUEUED: Final = JobStatus.QUEUED
    ACTIVE: Final = JobStatus.ACTIVE
    COMPLETED: Final = JobStatus.COMPLETED
    FAILED: Final = JobStatus.FAILED
    CANCEL_REQUESTED: Final = JobStatus.CANCEL_REQUESTED
    CANCELED: Final = JobStatus.CANCELED
    REQUEUEING: Final = JobStatus.REQUEUEING
    PAUSED: Final = JobStatus.PAUSED
    PAUSE_REQUESTED: Final = JobStatus.PAUSE_REQUESTED


class TaskStatuses:
    """TaskStatus's members as JobStatuses has JobStatus's."""

    QUEUED: Final = TaskStatus.QUEUED
    ACTIVE: Final = TaskStatus.ACTIVE
    COMPLETED: Final = TaskStatus.COMPLETED
    SOFT_FAILED: Final = TaskStatus.SOFT_FAILED
    FAILED: Final = TaskStatus.FAILED
    CANCELED: Final = TaskStatus.CANCELED
    PAUSED: Final = TaskStatus.PAUSED


# Seed 002, "Possible next status", verbatim. `paused` had none ("Not yet implemented").
JOB_SEED: dict[JobStatus, frozenset[JobStatus]] = {
    J.UNDER_CONSTRUCTION: frozenset({J.QUEUED, J.ACTIVE}),
    J.QUEUED: frozenset({J.ACTIVE, J.CANCELED}),
    J.ACTIVE: frozenset({J.COMPLETED, J.CANCELED, J.FAILED}),
    J.COMPLETED: frozenset({J.QUEUED}),
    J.FAILED: frozenset({J.QUEUED, J.CANCELED}),
    J.CANCEL_REQUESTED: frozenset({J.CANCELED}),
    J.CANCELED: frozenset({J.QUEUED}),
    J.REQUEUEING: frozenset({J.QUEUED}),
    J.PAUSED: frozenset(),
    J.PAUSE_REQUESTED: frozenset(),
}

# Moves beyond the seed's table, each with its reason.
JOB_EXTENSIONS: dict[tuple[JobStatus, JobStatus], str] = {
    (J.QUEUED, J.CANCEL_REQUESTED): "cancel goes through cancel-requested, as in Flamenco",
    (J.ACTIVE, J.CANCEL_REQUESTED): "cancel goes through cancel-requested, as in Flamenco",
    (J.FAILED, J.CANCEL_REQUESTED): "cancel goes through cancel-requested, as in Flamenco",
    (J.PAUSED, J.CANCEL_REQUESTED): "a paused job can be canceled (Flamenco 3.8)",
    (J.PAUSE_REQUESTED, J.CANCEL_REQUESTED): "cancel while pausing (Flamenco #104315)",
    (J.QUEUED, J.PAUSE_REQUESTED): "pause, which Flamenco added later",
    (J.ACTIVE, J.PAUSE_REQUESTED): "pause, which Flamenco added later",
    (J.QUEUED, J.PAUSED): "pausing a job with no active task completes at once",
    (J.ACTIVE, J.PAUSED): "pausing a job with no active task completes at once",
    (J.PAUSE_REQUESTED, J.PAUSED): "the last active task of a pausing job ended",
    (J.PAUSE_REQUESTED, J.ACTIVE): "resume before the pause completed",
    (J.PAUSE_REQUESTED, J.QUEUED): "resume before the pause completed, no task active",
    (J.PAUSE_REQUESTED, J.COMPLETED): "the last task completed while pausing",
    (J.PAUSE_REQUESTED, J.FAILED): "a task failed for good while pausing",
    (J.PAUSED, J.QUEUED): "resume",
    (J.COMPLETED, J.REQUEUEING): "requeue goes through requeueing, as in Flamenco",
    (J.FAILED, J.REQUEUEING): "requeue goes through requeueing, as in Flamenco",
    (J.CANCELED, J.REQUEUEING): "requeue goes through requeueing, as in Flamenco",
    (J.PAUSED, J.REQUEUEING): "requeue of a paused job (Flamenco's web UI offers it)",
    (J.QUEUED, J.COMPLETED): "requeueing a job whose tasks all completed (Flamenco)",
    (J.QUEUED, J.FAILED): "a task failed for good before the job was seen active",
    (J.REQUEUEING, J.COMPLETED): "requeue found nothing to run (a job without tasks)",
}

# Seed 002 for tasks, verbatim. `paused` had none ("Not yet implemented").
TASK_SEED: dict[TaskStatus, frozenset[TaskStatus]] = {
    T.QUEUED: frozenset({T.ACTIVE, T.CANCELED}),
    T.ACTIVE: frozenset({T.COMPLETED, T.CANCELED, T.FAILED, T.SOFT_FAILED}),
    T.COMPLETED: frozenset({T.QUEUED}),
    T.SOFT_FAILED: frozenset({T.QUEUED, T.COMPLETED, T.FAILED, T.CANCELED}),
    T.FAILED: frozenset({T.QUEUED, T.CANCELED}),
    T.CANCELED: frozenset({T.QUEUED}),
    T.PAUSED: frozenset(),
}

TASK_EXTENSIONS: dict[tuple[TaskStatus, TaskStatus], str] = {
    (T.SOFT_FAILED, T.ACTIVE): "soft-failed is schedulable like queued (Flamenco)",
    (T.QUEUED, T.PAUSED): "pausing a job pauses its queued tasks",
    (T.SOFT_FAILED, T.PAUSED): "pausing a job pauses its soft-failed tasks (Flamenco)",
    (T.PAUSED, T.QUEUED): "resume",
    (T.PAUSED, T.CANCELED): "canceling a paused job",
    (T.ACTIVE, T.QUEUED): "a worker shutting down hands its task back unfailed",
    (T.ACTIVE, T.PAUSED): "the process of a task whose job pauses ended undecided (Flamenco)",
}


S = TypeVar("S", JobStatus, TaskStatus)


def _table(
    seed: dict[S, frozenset[S]], extensions: dict[tuple[S, S], str]
) -> dict[S, frozenset[S]]:
    table = {k: set(v) for k, v in seed.items()}
    for a, b in extensions:
        table[a].add(b)
    return {k: frozenset(v) for k, v in table.items()}


JOB_TRANSITIONS = _table(JOB_SEED, JOB_EXTENSIONS)
TASK_TRANSITIONS = _table(TASK_SEED, TASK_EXTENSIONS)

JOB_TERMINAL = frozenset({J.COMPLETED, J.FAILED, J.CANCELED})
# A job whose tasks may be handed to workers (Flamenco's task scheduler).
JOB_DISPATCHABLE = frozenset({J.QUEUED, J.ACTIVE})
# Tasks that may be claimed.
TASK_CLAIMABLE = frozenset({T.QUEUED, T.SOFT_FAILED})
# Jobs whose running tasks are told to stop and come back paused, not failed.
JOB_HOLDING = frozenset({J.PAUSE_REQUESTED, J.PAUSED})
# Tasks still to finish: a job with none of these left is done one way or another.
TASK_UNFINISHED = frozenset({T.QUEUED, T.ACTIVE, T.SOFT_FAILED, T.PAUSED})


def job_can_move(old: JobStatus, new: JobStatus) -> bool:
    return new in JOB_TRANSITIONS[old]


def task_can_move(old: TaskStatus, new: TaskStatus) -> bool:
    return new in TASK_TRANSITIONS[old]


def check_job_move(old: JobStatus, new: JobStatus) -> None:
    """Raises FailedPrecondition naming both statuses if the job may not move."""
    if not job_can_move(old, new):
        raise FailedPrecondition(f"job status cannot change from {old} to {new}")


def check_task_move(old: TaskStatus, new: TaskStatus) -> None:
    """Raises FailedPrecondition naming both statuses if the task may not move."""
    if not task_can_move(old, new):
        raise FailedPrecondition(f"task status cannot change from {old} to {new}")


# Arvados's legacy state names, derived from the status.
ARVADOS_STATE: dict[JobStatus, str] = {
    J.UNDER_CONSTRUCTION: "Queued",
    J.QUEUED: "Queued",
    J.REQUEUEING: "Queued",
    J.PAUSED: "Queued",
    J.ACTIVE: "Running",
    J.PAUSE_REQUESTED: "Running",
    J.CANCEL_REQUESTED: "Running",
    J.COMPLETED: "Complete",
    J.FAILED: "Failed",
    J.CANCELED: "Cancelled",
}
