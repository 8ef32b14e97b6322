"""What a task's process tells its worker, and what the worker has yet to send.

The report protocol: the worker opens a pipe for each task and passes its writing end to
the process; the descriptor number is in $JOBTASK_REPORT_FD. The process writes one
report per line (UTF-8):

    progress <number>        fraction done, 0..1 (e.g. `progress 0.25`)
    output <text>            the task's output: the rest of the line, verbatim
    output_json <string>     the output as a JSON string, for outputs with newlines
                             (e.g. `output_json "./dir abc+3 0:3:a.txt\\n"`)
    success true|false       the task's verdict (true also needs progress 1)

Blank lines and lines starting with `#` are ignored; a malformed line is noted in the task
log and otherwise ignored. Reports take effect in order, and the ones written before the
process exits are all sent before its exit is reported. The completion rule of the seeds
applies: the task completed only if, when the process ends, progress is 1 and success is
true; success false fails it for good; no success at all is a temporary failure (retried).

A shell script:   echo "progress 0.5" >&"$JOBTASK_REPORT_FD"
Python:           os.write(int(os.environ["JOBTASK_REPORT_FD"]), b"success true\\n")
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from jobtask.v1 import task_service_pb2

# Pending log beyond this (the server unreachable for long) loses its oldest part.
MAX_PENDING_LOG = 4 * 1024 * 1024


@dataclass(frozen=True)
class Report:
    progress: float | None = None
    output: str | None = None
    success: bool | None = None


def parse_report(line: str) -> Report | None:
    """One protocol line → a Report; None for blank and comment lines; ValueError if bad."""
    text = line.rstrip("\r\n")
    if not text.strip() or text.lstrip().startswith("#"):
        return None
    word, _, rest = text.partition(" ")
    if word == "progress":
        try:
            value = float(rest.strip())
        except ValueError:
            raise ValueError(f"progress must be a number, not {rest.strip()!r}") from None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"progress must be between 0 and 1, not {value}")
        return Report(progress=value)
    if word == "output":
        return Report(output=rest)
    if word == "output_json":
        try:
            value_json = json.loads(rest)
        except json.JSONDecodeError as exc:
            raise ValueError(f"output_json needs a JSON string: {exc}") from None
        if not isinstance(value_json, str):
            raise ValueError("output_json needs a JSON string")
        return Report(output=value_json)
    if word == "success":
        verdict = rest.strip().lower()
        if verdict not in ("true", "false"):
            raise ValueError(f"success must be true or false, not {rest.strip()!r}")
        return Report(success=verdict == "true")
    raise ValueError(f"unknown report {word!r} (expected progress, output, output_json, success)")


class Outbox:
    """Changes not yet sent. Progress is coalesced (only the latest value is kept between
    sends, as temporalio's heartbeats do); output and success likewise; log text is kept
    in full, in order."""

    def __init__(self) -> None:
        # (Written out here and in take(): an outbox is made for every task.)
        self.progress: float | None = None
        self.output: str | None = None
        self.success: bool | None = None
        self._log: list[str] = []
        self.log_bytes = 0
        self.dropped = 0

    def apply(self, report: Report) -> None:
        if report.progress is not None:
            self.progress = report.progress
        if report.output is not None:
            self.output = report.output
        if report.success is not None:
            self.success = report.success

    def add_log(self, text: str) -> None:
        if not text:
            return
        self._log.append(text)
        # (An ASCII text's length is its size: no encoded copy for the worker's notes.)
        self.log_bytes += len(text) if text.isascii() else len(text.encode())
        while self.log_bytes > MAX_PENDING_LOG and len(self._log) > 1:
            oldest = self._log.pop(0)
            size = len(oldest.encode())
            self.log_bytes -= size
            self.dropped += size

    @property
    def urgent(self) -> bool:
        """Output and success are sent at once: a watcher should see the verdict promptly."""
        return self.output is not None or self.success is not None

    def empty(self) -> bool:
        return (
            self.progress is None and self.output is None and self.success is None and not self._log
        )

    def take(
        self, message: task_service_pb2.RunTaskRequest | None = None
    ) -> task_service_pb2.RunTaskRequest:
        """Everything pending as one message (numbered as the lease sends it; in `message`
        if given), leaving the outbox empty."""
        if message is None:
            # (No field given to the constructor: upb's keyword path costs ~1 us more than
            # the message and its fields set one by one, and this runs for every task.)
            message = task_service_pb2.RunTaskRequest()
        if self.progress is not None:
            message.progress = self.progress
        if self.output is not None:
            message.output = self.output
        if self.success is not None:
            message.success = self.success
        if self.dropped:
            self._log.insert(0, f"[jobtask-worker: {self.dropped} bytes of log dropped]\n")
        message.log = "".join(self._log)
        # Empty again (as __init__ makes it).
        self.progress = None
        self.output = None
        self.success = None
        self._log = []
        self.log_bytes = 0
        self.dropped = 0
        return message
