"""What every run of a claimed task has, however it runs (jobtask.worker.runner's TaskRun:
a script, or anything on a RunTask stream of its own; jobtask.worker.carried's CarriedRun:
a registered function the worker's session carries): the outbox of what the server has
yet to hear (log text, progress, output, success), the notes that open and close each
attempt's log, the server's instructions (CANCEL stops the process politely, STOP kills
it), the lease watchdog's verdict, and the exit report.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from jobtask.v1 import task_service_pb2
from jobtask.worker.config import WorkerConfig
from jobtask.worker.functions import FunctionRun
from jobtask.worker.lease import Instruction, TaskLease
from jobtask.worker.process import Exit, ScriptProcess
from jobtask.worker.reports import Outbox, Report, parse_report

log = logging.getLogger("jobtask.worker.runner")


def ignored(instruction: int, reason: str) -> None:
    """A finished run's lease hears nothing more."""


def unheard() -> None:
    """A finished run's lease hears nothing more."""


def note(text: str) -> str:
    """A line of the worker's own in the task log."""
    return f"[jobtask-worker] {text}\n"


# The notes that open and close an attempt's log, made once for each attempt number (and
# worker, and way it ended), not once a task: most tasks are first attempts that exit 0.
@functools.lru_cache(maxsize=256)
def opening_note(attempt: int, node_name: str, worker_id: str) -> str:
    return note(f"attempt {attempt} on {node_name} (worker {worker_id})")


def closing_note(attempt: int, exit_status: Exit) -> str:
    # (Keyed by the exit's fields: an Exit's own hash is a call into Python.)
    return _closing_note(attempt, exit_status.exit_code, exit_status.signal)


@functools.lru_cache(maxsize=256)
def _closing_note(attempt: int, exit_code: int | None, signal: int | None) -> str:
    return note(f"attempt {attempt} ended: {Exit(exit_code, signal)}")


class Run:
    """The parts of a run its kinds share; each kind sets `stream` (the lease) and says
    what _wake and _pending do."""

    stream: TaskLease
    # The state a run starts in, as class defaults (a run is made for every task; most
    # keep these to the end).
    process: ScriptProcess | FunctionRun | None = None
    exit: Exit | None = None
    handing_back = False
    _exit_sent = False
    _instructions: tuple[int, ...] = ()  # acted on (most runs get none)
    _first_pending: float | None = None
    _expired = False

    def __init__(
        self, config: WorkerConfig, assignment: task_service_pb2.TaskAssignment, slot: int
    ) -> None:
        self.config = config
        self.assignment = assignment
        self.slot = slot
        task = assignment.task
        self.task_uuid = task.uuid
        self.attempt = task.attempt
        self.outbox = Outbox()
        # The task the worker runs this in (jobtask.worker.agent).
        self.task: asyncio.Task[None]

    def interrupt(self) -> None:
        """The worker is stopping: stop the process and hand the task back."""
        self.handing_back = True
        if self.process is not None:
            self.process.terminate(self.config.kill_grace)
        self._wake()

    def _wake(self) -> None:
        """Something the server must hear at once is pending (or the worker stops)."""
        raise NotImplementedError

    def _pending(self) -> None:
        """Something waits in the outbox: it must be sent within log_flush_seconds."""
        if self._first_pending is None:
            self._first_pending = time.monotonic()

    # -- what the process says ------------------------------------------------------------

    def _opening_note(self) -> str:
        # Each attempt's part of the task log opens and closes with a line of ours, so that
        # `jobtask logs` shows where one attempt ends and why, and where the next begins.
        return opening_note(self.attempt, self.config.node_name, self.config.worker_id)

    def _closing_note(self, exit_status: Exit) -> str:
        return closing_note(self.attempt, exit_status)

    def _log(self, text: str) -> None:
        if not text:
            return
        self._pending()
        self.outbox.add_log(text)
        if self.outbox.log_bytes >= self.config.log_flush_bytes:
            self._wake()

    def _report(self, line: str) -> None:
        try:
            report = parse_report(line)
        except ValueError as exc:
            self._log(note(f"ignored report line {line.rstrip()!r}: {exc}"))
            return
        if report is not None:
            self._reported(report)

    def _reported(self, report: Report) -> None:
        outbox = self.outbox
        outbox.apply(report)
        if self._first_pending is None:
            self._pending()
        if outbox.output is not None or outbox.success is not None:  # (urgent, written out)
            self._wake()

    def _flush_due(self, now: float) -> bool:
        if self.outbox.empty():
            return False
        if self.outbox.urgent or self.outbox.log_bytes >= self.config.log_flush_bytes:
            return True
        started = self._first_pending or now
        return now - started >= self.config.log_flush_seconds

    def _exit_message(
        self, exit_status: Exit, message: task_service_pb2.RunTaskRequest | None = None
    ) -> task_service_pb2.RunTaskRequest:
        """The exit report, with whatever the outbox still holds (in `message` if given)."""
        message = self.outbox.take(message)
        if self.handing_back:
            message.handed_back = True
        if exit_status.signal is not None:
            message.signal = exit_status.signal
        else:
            message.exit_code = exit_status.exit_code or 0
        return message

    # -- what the server says, and the watchdog -------------------------------------------

    def _instructed(self, instruction: int, reason: str) -> None:
        # Every response repeats the instruction until the process is gone: act once.
        if self.process is None or instruction in self._instructions:
            return
        self._instructions += (instruction,)
        if instruction == Instruction.INSTRUCTION_STOP:
            log.warning("task %s: lease lost (%s): killing the process", self.task_uuid, reason)
            self.process.kill()
        else:
            log.info("task %s: canceled (%s): stopping the process group", self.task_uuid, reason)
            self._log(note(f"canceled: {reason or 'by request'}; stopping the process"))
            self.process.terminate(self.config.kill_grace)

    def _expire(self, now: float) -> None:
        """The lease watchdog's verdict: the lease cannot have been renewed in time (see
        TaskLease.deadline), so the process is killed and the run gives the task up."""
        log.error(
            "task %s: lease not renewed for %.1fs (ttl %.1fs) and due to expire: "
            "the lease is gone, killing the process",
            self.task_uuid,
            now - self.stream.renewed_at,
            self.stream.ttl,
        )
        if self.process is not None and self.exit is None:
            self._log(note("lease not renewed in time: the process was killed"))
            self.process.kill()
        self._expired = True
