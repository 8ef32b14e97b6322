"""The seeds' rules for tasks and jobs that are not status tables.

Completion (seed 000/001): "When a job task process terminates, the task is considered
complete only if its most recent PATCH transaction had progress=1.0 and success=true."
Temporary failure: "If a job task process terminates without updating success to true or
false, it is assumed that the task failed but is worth re-attempting." (The seed wins over
later Arvados code, which treated a missing success as permanent.) We read "its most recent
PATCH" as the task record after its most recent update: progress and success as they stand.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from jobtask.domain.statuses import TaskStatus

DEFAULT_RETRY_LIMIT = 3

# What decide_exit makes of a task: the statuses an attempt decided at its process's end
# leaves it in (a cancel or a hand-back ends an attempt undecided, in no rule's status).
EXIT_STATUSES = (TaskStatus.COMPLETED, TaskStatus.SOFT_FAILED, TaskStatus.FAILED, TaskStatus.PAUSED)


@dataclass(frozen=True)
class ExitDecision:
    status: TaskStatus
    # True when the exit counts as a temporary failure (failed_count goes up).
    temporary_failure: bool
    reason: str


def decide_exit(
    progress: float,
    success: bool | None,
    failed_count: int,
    retry_limit: int = DEFAULT_RETRY_LIMIT,
    *,
    job_holding: bool = False,
) -> ExitDecision:
    """What the task becomes when its process ends, by the seeds' rules.

    `job_holding`: the job is pausing (JOB_HOLDING). Its workers were told to stop, so an
    undecided end is the pause taking effect, not a failure: the task waits paused.
    """
    if success is True and progress == 1.0:
        return ExitDecision(TaskStatus.COMPLETED, False, "completed")
    if success is False:
        return ExitDecision(TaskStatus.FAILED, False, "the task reported success=false")
    if success is True:
        return ExitDecision(
            TaskStatus.FAILED,
            False,
            f"the task reported success=true with progress={progress}, not 1.0",
        )
    if job_holding:
        return ExitDecision(TaskStatus.PAUSED, False, "its job was paused")
    # Temporary failure: retried until the limit of attempts is reached.
    if failed_count + 1 >= retry_limit:
        return ExitDecision(
            TaskStatus.FAILED,
            True,
            f"the process ended without deciding success, {failed_count + 1} times "
            f"(retry limit {retry_limit})",
        )
    return ExitDecision(TaskStatus.SOFT_FAILED, True, "the process ended without deciding success")


def handed_back_status(job_holding: bool) -> TaskStatus:
    """Where a task handed back unfailed goes: queued, or paused while its job pauses
    (Flamenco's returnTaskOfWorker)."""
    return TaskStatus.PAUSED if job_holding else TaskStatus.QUEUED


# json.dumps with any option builds a new encoder each call; this is the one it would build.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_SCALARS = frozenset({str, int, bool, type(None)})
# Nesting _orjson_writes_as_json follows (a deeper document goes to json).
_DEEP = 32


def canonical_json(value: Any) -> str:
    """json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False): what
    identities and submission digests hash (stored: the text must never change)."""
    return _CANONICAL.encode(value)


def _plain_float(value: float) -> bool:
    """Whether orjson writes the float as json does (repr's text): a zero, or a magnitude
    from 1e-4 up to 1e16, where both write the shortest digits that read back as it, in
    plain notation (outside it json writes an exponent, 1e-05, where orjson may not:
    0.00001). NaN and the infinities are not (json writes NaN, orjson null)."""
    return value == 0.0 or 1e-4 <= abs(value) < 1e16


def _orjson_writes_as_json(value: Any, depth: int = 0) -> bool:
    """Whether orjson writes `value` as canonical_json does: dicts with str keys, lists,
    str, int, bool, None and _plain_float's floats only, exactly those types (orjson
    writes types json refuses). A document nested deeper than _DEEP is json's to write (or
    refuse)."""
    cls = value.__class__
    if cls is dict:
        items: Iterable[Any] = value.values()
        for key in value:
            if key.__class__ is not str:
                return False
    elif cls is list:
        items = value
    elif cls is float:
        return _plain_float(value)
    else:
        return cls in _SCALARS
    for item in items:
        kind = item.__class__
        if kind in _SCALARS or (not item and (kind is dict or kind is list)):
            continue
        if kind is float:
            if _plain_float(item):
                continue
            return False
        if depth >= _DEEP or not _orjson_writes_as_json(item, depth + 1):
            return False
    return True


def canonical_digest(value: Any) -> str:
    """The SHA-256 (hex) of canonical_json(value)'s UTF-8 text. orjson writes the same bytes
    for the values _orjson_writes_as_json admits (tests/domain/test_rules.py: every code
    point, key orders, the integer limits, floats by their bits and at the range's ends)
    at a tenth of json's cost; it refuses what it
    cannot write (an int beyond 64 bits, a lone surrogate, deep nesting), and json decides
    those, as for every other value."""
    if _orjson_writes_as_json(value):
        try:
            return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()
        except orjson.JSONEncodeError:
            pass
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def job_identity(
    script: str,
    script_version: str,
    script_parameters: dict[str, Any],
    runtime_constraints: dict[str, Any],
) -> str:
    """Digest of what makes two jobs the same job for duplicate detection."""
    return canonical_digest(
        {
            "script": script,
            "script_version": script_version,
            "script_parameters": script_parameters,
            "runtime_constraints": {k: v for k, v in runtime_constraints.items() if v is not None},
        }
    )


def submission_digest(spec: dict[str, Any]) -> str:
    """Digest of a whole submitted job body, for comparing repeats of one submit_id."""
    return canonical_digest(spec)


def concatenate_outputs(outputs: list[str | None]) -> str:
    """The job's output: its tasks' outputs in creation order, as crunch-job combined them."""
    return "".join(o for o in outputs if o)
