"""The Arvados fields that follow the status and never contradict it.

Jobs: running, success, state, started_at, finished_at, cancelled_at/_by_*,
is_locked_by_uuid, output. Tasks: success, progress, started_at, finished_at, the lease.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from jobtask.domain.statuses import (
    ARVADOS_STATE,
    JOB_TERMINAL,
    JobStatus,
    JobStatuses,
    TaskStatus,
    TaskStatuses,
)

# Plain classes of the members: their lookups cost a third of the enums' (statuses.py).
J, T = JobStatuses, TaskStatuses

JOB_RUNNING = frozenset({J.ACTIVE, J.PAUSE_REQUESTED, J.CANCEL_REQUESTED})
_JOB_SUCCESS = {J.COMPLETED: True, J.FAILED: False, J.CANCELED: False}


class JobState(Protocol):
    """What of a job's row its next status depends on (jobtask.store.rows.JobRow)."""

    @property
    def started_at(self) -> dt.datetime | None: ...
    @property
    def is_locked_by_uuid(self) -> str | None: ...
    @property
    def cancelled_at(self) -> dt.datetime | None: ...


def job_on_enter(
    new: JobStatus,
    previous: JobStatus,
    job: JobState,
    *,
    now: dt.datetime,
    user_uuid: str | None,
    client_uuid: str | None,
    locker_uuid: str,
) -> dict[str, Any]:
    """Column changes for a job entering `new` (the status itself included)."""
    # A job asked to cancel (or pause) before it ever started is not running: Arvados shows
    # it Queued until it is Cancelled, never Running without a start.
    started = new is J.ACTIVE or job.started_at is not None
    changes: dict[str, Any] = {
        "status": new._value_,  # (`.value` is a Python call: statuses.py)
        "state": ARVADOS_STATE[new] if started or new not in JOB_RUNNING else "Queued",
        "running": new in JOB_RUNNING and started,
        "success": _JOB_SUCCESS.get(new),
    }
    restarting = new is J.REQUEUEING or (new is J.QUEUED and previous in JOB_TERMINAL)
    if restarting:
        changes.update(
            started_at=None,
            finished_at=None,
            cancelled_at=None,
            cancelled_by_user_uuid=None,
            cancelled_by_client_uuid=None,
            is_locked_by_uuid=None,
            output=None,
            # Flamenco: a requeued job starts with a clean blocklist.
            failure_reason=None,
            blocklist=None,
        )
        return changes
    if new is J.ACTIVE:
        if job.started_at is None:
            changes["started_at"] = now
        if job.is_locked_by_uuid is None:
            # Seeds: the job is locked when it starts, so its attributes cannot be altered.
            changes["is_locked_by_uuid"] = locker_uuid
    if new in (J.CANCEL_REQUESTED, J.CANCELED) and job.cancelled_at is None:
        changes.update(
            cancelled_at=now,
            cancelled_by_user_uuid=user_uuid,
            cancelled_by_client_uuid=client_uuid,
        )
    if new in JOB_TERMINAL:
        changes["finished_at"] = now
    elif previous in JOB_TERMINAL:
        # Out of an end into a move still under way (a failed job asked to cancel): it is
        # not finished until it ends again (Arvados: finished_at with the end's state only).
        changes["finished_at"] = None
    return changes


_CLEAR_LEASE: dict[str, Any] = {"lease_id": None, "lease_expires_at": None, "token_digest": None}


def task_on_enter(
    new: TaskStatus, *, now: dt.datetime, reset_attempts: bool = False
) -> dict[str, Any]:
    """Column changes for a task entering `new` by a status move (not by its process's exit)."""
    changes: dict[str, Any] = {"status": new._value_}
    if new is T.COMPLETED:
        changes.update(success=True, progress=1.0, finished_at=now, **_CLEAR_LEASE)
    elif new is T.FAILED:
        changes.update(success=False, finished_at=now, **_CLEAR_LEASE)
    elif new is T.CANCELED:
        # The lease stays: the worker may still report its process's exit.
        changes.update(success=None, finished_at=now)
    elif new is T.QUEUED:
        changes.update(
            success=None,
            progress=0.0,
            started_at=None,
            finished_at=None,
            runnable_after=None,
            failure_reason=None,
            **_CLEAR_LEASE,
        )
        if reset_attempts:
            changes.update(output=None, failed_count=0, failed_at=None, failed_log=None)
    elif new is T.SOFT_FAILED:
        changes.update(success=None, finished_at=now, **_CLEAR_LEASE)
    elif new is T.PAUSED:
        # Its process (if any) has ended; progress stays as a checkpoint until resumed.
        changes.update(success=None, finished_at=None, **_CLEAR_LEASE)
    return changes
