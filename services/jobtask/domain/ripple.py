"""How a change to one side moves the other: tasks move their job, jobs move their tasks.

Flamenco's tables (reference peers.md 1.2 and 1.3), made level-triggered where possible so a
store can apply them in a loop until nothing moves:

- `on_enter(job status, previous)` lists the bulk task moves that entering a job status causes;
- `follow_up(job status, counts)` gives the job status that the task counts call for, if any.

A store applies a job status change, then its `on_enter` moves, then asks `follow_up`
again, until it answers None (bounded by MAX_STEPS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jobtask.domain.statuses import (
    TASK_UNFINISHED,
    JobStatus,
    JobStatuses,
    TaskStatus,
    TaskStatuses,
)

# Plain classes of the members: their lookups cost a third of the enums' (statuses.py).
J, T = JobStatuses, TaskStatuses

MAX_STEPS = 8


@dataclass(frozen=True)
class TaskMove:
    """Move every task of the job whose status is in `sources` to `target`."""

    sources: frozenset[TaskStatus]
    target: TaskStatus
    # A requeue by a person starts the task's attempts afresh; a hand-back does not.
    reset_attempts: bool = False


def on_enter(new: JobStatus, previous: JobStatus) -> list[TaskMove]:
    """The task moves caused by the job entering `new` from `previous`."""
    if new in (J.CANCEL_REQUESTED, J.FAILED, J.CANCELED):
        return [TaskMove(TASK_UNFINISHED, T.CANCELED)]
    if new in (J.PAUSE_REQUESTED, J.PAUSED):
        return [TaskMove(frozenset({T.QUEUED, T.SOFT_FAILED}), T.PAUSED)]
    if new is J.REQUEUEING:
        if previous is J.COMPLETED:
            # Seed 002: requeueing a completed job requeues all its tasks.
            return [TaskMove(frozenset(TaskStatus) - {T.ACTIVE}, T.QUEUED, reset_attempts=True)]
        # Seed 002: otherwise only the tasks not completed are requeued.
        sources = frozenset({T.CANCELED, T.FAILED, T.PAUSED, T.SOFT_FAILED})
        return [TaskMove(sources, T.QUEUED, reset_attempts=True)]
    if new in (J.QUEUED, J.ACTIVE) and previous in (J.PAUSED, J.PAUSE_REQUESTED):
        return [TaskMove(frozenset({T.PAUSED}), T.QUEUED)]
    return []


def _unfinished(counts: Mapping[TaskStatus, int]) -> int:
    return sum(counts.get(s, 0) for s in TASK_UNFINISHED)


def follow_up(job: JobStatus, counts: Mapping[TaskStatus, int]) -> JobStatus | None:
    """The status the job should move to given its tasks' counts, or None."""
    total = sum(counts.values())
    done = counts.get(T.COMPLETED, 0)
    active = counts.get(T.ACTIVE, 0)
    failed = counts.get(T.FAILED, 0)
    all_done = total > 0 and done == total

    if job is J.REQUEUEING:
        return J.COMPLETED if all_done else J.QUEUED
    if job is J.CANCEL_REQUESTED:
        return J.CANCELED if _unfinished(counts) == 0 else None
    if job in (J.QUEUED, J.ACTIVE, J.PAUSE_REQUESTED):
        if failed:
            # crunch-job: a task that failed for good fails the whole job.
            return J.FAILED
        if all_done:
            return J.COMPLETED
        if job is J.PAUSE_REQUESTED:
            return J.PAUSED if active == 0 else None
        # (Counted only here: every claim and completion settles its jobs through this
        # function, and the other branches answer without it.)
        if counts.get(T.CANCELED, 0) and _unfinished(counts) == 0:
            # Flamenco: nothing left to run and some tasks were canceled.
            return J.CANCELED
        if job is J.QUEUED and active:
            return J.ACTIVE
        return None
    # A task of a finished job was requeued (or created): the job runs again.
    waiting = counts.get(T.QUEUED, 0) or counts.get(T.SOFT_FAILED, 0)
    if job in (J.COMPLETED, J.FAILED, J.CANCELED) and not failed and waiting:
        return J.QUEUED
    return None
