"""A task's lease as the worker sees it, whatever carries it (a RunTask stream of its own,
jobtask.worker.stream, or the worker's session, jobtask.worker.session): what is not yet
acknowledged, the renewals, the server's instructions and its decision."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from google.protobuf import duration_pb2
from jobtask.v1 import job_task_pb2, task_service_pb2

Instruction = task_service_pb2.Instruction
# The task's process is stopped this fraction of a ttl (at most MAX_LEASE_MARGIN seconds)
# before its lease can expire unrenewed: the server's reaper must find it stopped.
LEASE_MARGIN = 0.1
MAX_LEASE_MARGIN = 3.0


def seconds(duration: duration_pb2.Duration) -> float:
    """A Duration in seconds (what ToTimedelta().total_seconds() gives, without the
    timedelta: this runs for every assignment and acknowledgement)."""
    return duration.seconds + duration.nanos / 1e9


class StreamBroken(Exception):
    """The channel to the server failed; the lease may still be valid (reconnect)."""


class LeaseLost(Exception):
    """The server says the lease is gone (expired, reassigned, or the task was decided)."""


class LeaseNews(Protocol):
    """What RunTaskResponse and the session's TaskUpdate both say about one task."""

    @property
    def acked_seq(self) -> int: ...
    @property
    def instruction(self) -> task_service_pb2.Instruction: ...
    @property
    def reason(self) -> str: ...
    @property
    def lease(self) -> task_service_pb2.Lease: ...
    @property
    def task(self) -> job_task_pb2.JobTask: ...
    def HasField(self, field_name: str) -> bool: ...


class TaskLease:
    # What the server decided (its answer to the exit), or why the lease is gone; class
    # defaults, as a lease is made for every task.
    final: job_task_pb2.JobTask | None = None
    lost_reason: str | None = None
    _seq = 0

    def __init__(
        self,
        task_uuid: str,
        lease_id: str,
        ttl: float,
        on_instruction: Callable[[int, str], None],
        on_news: Callable[[], None],
        granted_at: float | None = None,
    ) -> None:
        self.task_uuid = task_uuid
        self.lease_id = lease_id
        self.ttl = ttl
        self.on_instruction = on_instruction
        # Called whenever something arrives, so the run looks again at once.
        self.on_news = on_news
        # No later than when the server last renewed the lease (the claim granted it just
        # now). A renewal is dated by when the message it answers was sent, not by when its
        # answer arrived: the server renewed in between, so the lease expires no earlier
        # than that plus a ttl, and a worker that kills its process by this date does so
        # before the server can reap the lease, however slow the answer was. (`granted_at`:
        # when the assignment arrived, if the carrier read the clock then.)
        self.renewed_at = time.monotonic() if granted_at is None else granted_at
        self._sent_at: dict[int, float] = {}
        self._unacked: list[task_service_pb2.RunTaskRequest] = []

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    def _number(self, message: task_service_pb2.RunTaskRequest) -> None:
        """Gives a report its sequence number and keeps it until it is acknowledged."""
        self._seq += 1
        message.seq = self._seq
        self._sent_at[self._seq] = time.monotonic()
        self._unacked.append(message)

    def check(self) -> None:
        """Raises LeaseLost (or the carrier's own StreamBroken) if the lease is over."""
        if self.lost_reason is not None:
            raise LeaseLost(self.lost_reason)

    def deadline(self) -> float:
        """When (time.monotonic()) the lease watchdog must stop the task's process: a
        ttl, less a margin, after the server last renewed the lease."""
        return self.renewed_at + self.ttl - min(self.ttl * LEASE_MARGIN, MAX_LEASE_MARGIN)

    def renewed(self, sent_at: float) -> None:
        """The server renewed the lease answering a message sent at `sent_at`."""
        self.renewed_at = max(self.renewed_at, sent_at)

    def receive(self, news: LeaseNews) -> None:
        if news.HasField("task"):
            # The exit was applied: a closing STOP only says the lease is over. (Looked at
            # first: what is unacknowledged, when the lease was renewed and its ttl no
            # longer matter, and reading them cost four field reads on every task's last
            # update.)
            self.final = news.task
            self.on_news()
            return
        acked = news.acked_seq
        if acked:
            sent_at = self._sent_at.get(acked)
            if sent_at is not None and sent_at > self.renewed_at:
                self.renewed_at = sent_at  # (renewed(), written out)
            if acked >= self._seq:  # all of them (the usual answer)
                self._sent_at.clear()
                self._unacked.clear()
            else:
                self._sent_at = {n: t for n, t in self._sent_at.items() if n > acked}
                self._unacked = [m for m in self._unacked if m.seq > acked]
        if news.HasField("lease"):
            lease = news.lease
            if lease.HasField("ttl"):
                ttl = seconds(lease.ttl)
                if ttl > 0:
                    self.ttl = ttl
        instruction = news.instruction
        if instruction == Instruction.INSTRUCTION_STOP:
            self.lost_reason = news.reason or "the lease was lost"
        if instruction in (Instruction.INSTRUCTION_CANCEL, Instruction.INSTRUCTION_STOP):
            self.on_instruction(instruction, news.reason)
        self.on_news()
