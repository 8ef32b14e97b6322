"""What a worker reports over its task's stream, coalesced, and what it is told back.

A worker may report far faster than a database commits. Reports queue in a Batch that
keeps only the latest progress, output and success, concatenates log chunks and remembers
the highest sequence number; one transaction applies a whole batch (temporalio's heartbeat
coalescing). The exit is the last report: nothing after it is read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from jobtask.domain.resources import TASK_ATTRS
from jobtask.domain.statuses import JOB_HOLDING, JobStatus, TaskStatus
from jobtask.domain.updates import check_progress, check_value

# The task's log column keeps its last 64 KiB; the change feed gets every chunk.
LOG_TAIL_BYTES = 64 * 1024
# Log events are split so one feed row (and one watch message) stays small.
LOG_EVENT_BYTES = 64 * 1024
# What one attempt of a task may store as log events at most (JOBTASK_TASK_LOG_EVENT_LIMIT);
# past it, chunks are dropped and one marker event says how much.
TASK_LOG_EVENT_LIMIT = 8 * 1024 * 1024


@dataclass(frozen=True)
class Report:
    seq: int = 0
    progress: float | None = None
    output: str | None = None
    success: bool | None = None
    log: str = ""
    exit_code: int | None = None
    signal: int | None = None
    handed_back: bool = False

    def __post_init__(self) -> None:
        if self.progress is not None:
            check_progress(self.progress)
        if self.output is not None:
            check_value("output", TASK_ATTRS["output"], self.output)

    @property
    def ends(self) -> bool:
        return self.exit_code is not None or self.signal is not None or self.handed_back


@dataclass
class Batch:
    """Reports received but not yet applied."""

    seq: int = 0
    count: int = 0
    progress: float | None = None
    output: str | None = None
    success: bool | None = None
    log: str = ""
    exit: Report | None = None

    def add(self, report: Report) -> None:
        self.count += 1
        self.seq = max(self.seq, report.seq)
        if report.progress is not None:
            self.progress = report.progress
        if report.output is not None:
            self.output = report.output
        if report.success is not None:
            self.success = report.success
        self.log += report.log
        if report.ends:
            self.exit = report

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def is_heartbeat(self) -> bool:
        """Holds nothing but liveness: renewing the lease is all there is to apply."""
        # (Field by field: `changes` builds a dict, and every batch is asked.)
        return (
            self.progress is None
            and self.output is None
            and self.success is None
            and not self.log
            and self.exit is None
        )

    @property
    def urgent(self) -> bool:
        """Holds a decision (output, success, the exit) that must not wait for coalescing."""
        return self.exit is not None or self.output is not None or self.success is not None

    @property
    def changes(self) -> dict[str, object]:
        """Process-reported attributes of the task that this batch sets."""
        out: dict[str, object] = {}
        if self.progress is not None:
            out["progress"] = self.progress
        if self.output is not None:
            out["output"] = self.output
        if self.success is not None:
            out["success"] = self.success
        return out


def log_tail(current: str | None, chunk: str, limit: int = LOG_TAIL_BYTES) -> str:
    """The log after appending `chunk`, cut to its last `limit` bytes of UTF-8."""
    data = ((current or "") + chunk).encode()
    if len(data) <= limit:
        return data.decode()
    # A multi-byte character cut at the front is dropped, not mangled.
    return data[-limit:].decode(errors="ignore")


def log_head(text: str, room: int) -> tuple[str, int]:
    """The first at most `room` bytes (UTF-8) of `text`, not cutting a character, and how
    many bytes of it are left out."""
    data = text.encode()
    if len(data) <= room:
        return text, 0
    kept = data[: max(room, 0)].decode(errors="ignore")
    return kept, len(data) - len(kept.encode())


def log_truncated(dropped: int) -> str:
    """The marker event's text for an attempt whose log events were cut."""
    return f"[log truncated: {dropped} bytes dropped]\n"


def log_chunks(text: str, size: int = LOG_EVENT_BYTES) -> list[str]:
    """Splits a log text into pieces of at most `size` characters (≥ 1 piece if any)."""
    return [text[i : i + size] for i in range(0, len(text), size)]


class Instruction(enum.Enum):
    CONTINUE = "continue"
    # The task or its job was canceled or paused: stop the process, then report its exit.
    CANCEL = "cancel"
    # The lease is no longer this worker's: stop at once, report nothing more.
    STOP = "stop"


@dataclass(frozen=True)
class Verdict:
    instruction: Instruction
    reason: str = ""


# The usual verdicts, made once (every report and check of a lease asks for one).
_LOST = Verdict(Instruction.STOP, "the lease was lost (expired, or the task was reassigned)")
_GO_ON = Verdict(Instruction.CONTINUE)


def verdict(
    task_status: TaskStatus | None, job_status: JobStatus | None, lease_held: bool
) -> Verdict:
    """What a worker holding (or having held) a lease on a task is told now."""
    if task_status is None or not lease_held:
        return _LOST
    if task_status is not TaskStatus.ACTIVE:
        return Verdict(Instruction.CANCEL, f"the task is {task_status}")
    if job_status in JOB_HOLDING:
        return Verdict(Instruction.CANCEL, f"the job is {job_status}")
    if job_status is not None and job_status in (JobStatus.CANCEL_REQUESTED, JobStatus.CANCELED):
        return Verdict(Instruction.CANCEL, f"the job is {job_status}")
    return _GO_ON
