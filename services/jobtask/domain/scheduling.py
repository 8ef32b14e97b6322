"""Scheduling rules beyond the seeds: retry backoff, the job blocklist, failure reasons.

Retry backoff: a task that failed temporarily for the n-th time waits before it is runnable
again, `min(max, base * 2**(n-1))` seconds with "equal jitter" (a uniform draw between half
of that and all of it), so retries of many tasks failed at once spread out. The job's (or
the task's own) runtime_constraints `retry_backoff_base_seconds` and
`retry_backoff_max_seconds` override the server's defaults.

The job blocklist (Flamenco): a worker that has failed `blocklist_threshold` tasks of one job
gets no more tasks of that job while another live worker could run them; when adding it
leaves no such worker, the failing task fails for good (rule "blocklist").
"""

from __future__ import annotations

import datetime as dt
import enum
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_MAX = 60.0
DEFAULT_BLOCKLIST_THRESHOLD = 3
# The longest backoff a job may ask for (one week), in seconds.
MAX_BACKOFF_SECONDS = 7 * 24 * 3600
LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 4096
# Script not found, or not executable (the worker's exit code, as a shell's).
EXIT_NOT_FOUND = 127


class FailureRule(enum.StrEnum):
    RETRY_LIMIT = "retry-limit"
    SUCCESS_FALSE = "success-false"
    INCOMPLETE = "incomplete"
    SCRIPT_NOT_FOUND = "script-not-found"
    BLOCKLIST = "blocklist"


@dataclass(frozen=True)
class Backoff:
    base: float = DEFAULT_BACKOFF_BASE
    max: float = DEFAULT_BACKOFF_MAX

    def __post_init__(self) -> None:
        if self.base < 0 or self.max < 0:
            raise ValueError("retry backoff seconds must not be negative")

    def of(self, *constraints: Mapping[str, Any] | None) -> Backoff:
        """The backoff for a task: later constraints (the task's) override earlier (the
        job's), which override the server's default."""
        base, cap = self.base, self.max
        for rc in constraints:
            if rc and rc.get("retry_backoff_base_seconds") is not None:
                base = float(rc["retry_backoff_base_seconds"])
            if rc and rc.get("retry_backoff_max_seconds") is not None:
                cap = float(rc["retry_backoff_max_seconds"])
        return Backoff(base, cap)

    def bound(self, failures: int) -> float:
        """The longest wait after the `failures`-th temporary failure (1 for the first)."""
        if self.base <= 0 or failures < 1:
            return 0.0
        exponent = min(failures - 1, 62)  # 2**62 seconds outgrows any max
        return float(min(self.max, self.base * 2**exponent))

    def delay(self, failures: int, draw: float | None = None) -> float:
        """A wait in [bound/2, bound]: equal jitter. `draw`: a number in [0, 1)."""
        bound = self.bound(failures)
        r = random.random() if draw is None else draw  # jitter, not a secret
        return bound / 2 + bound / 2 * r


def blocklist_threshold(job_constraints: Mapping[str, Any] | None, default: int) -> int:
    value = (job_constraints or {}).get("blocklist_threshold")
    return default if value is None else int(value)


def blocked_workers(blocklist: Iterable[Mapping[str, Any]] | None) -> set[str]:
    """The workers on a job's blocklist."""
    return {str(e["worker_id"]) for e in blocklist or ()}


def blocklist_entry(worker_id: str, failed_tasks: int, now: dt.datetime) -> dict[str, Any]:
    return {"worker_id": worker_id, "failed_tasks": failed_tasks, "added_at": now.isoformat()}


def log_tail(log: str) -> str:
    """The last lines of a log, bounded in lines and bytes."""
    lines = log.rstrip("\n").splitlines()[-LOG_TAIL_LINES:]
    tail = "\n".join(lines)
    data = tail.encode()
    if len(data) > LOG_TAIL_BYTES:
        tail = data[-LOG_TAIL_BYTES:].decode(errors="ignore")
    return tail


def failure_reason(
    rule: FailureRule,
    message: str,
    *,
    task_uuid: str,
    worker_id: str | None,
    exit_code: int | None,
    signal: int | None,
    log: str,
) -> dict[str, Any]:
    return {
        "rule": rule.value,
        "message": message,
        "exit_code": exit_code,
        "signal": signal,
        "log_tail": log_tail(log),
        "task_uuid": task_uuid,
        "worker_id": worker_id,
    }


def permanent_rule(
    exit_code: int | None, success: bool | None, retry_limit_hit: bool
) -> FailureRule:
    """Which rule failed a task whose process ended: a script that could not be found
    (exit 127) first, as it is the cause of the others."""
    if exit_code == EXIT_NOT_FOUND:
        return FailureRule.SCRIPT_NOT_FOUND
    if success is False:
        return FailureRule.SUCCESS_FALSE
    if success is True:
        return FailureRule.INCOMPLETE
    return FailureRule.RETRY_LIMIT if retry_limit_hit else FailureRule.SUCCESS_FALSE
