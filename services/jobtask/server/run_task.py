"""RunTask: one bidirectional stream per claimed task.

The protocol, worker side first:

- The first message names `task_uuid` and `lease_id` (INVALID_ARGUMENT if either is
  missing). If the lease is not the task's current one the server answers one STOP and
  closes the stream (OK).
- Every message may carry progress (0..1), output, success and a log chunk; a message with
  none of these is a heartbeat. Send one at least every `lease.ttl / 3` (the heartbeat
  interval): each renews the lease, and a lease not renewed for `ttl` is reaped (a
  temporary failure) within one more heartbeat interval.
- The last message carries `exit_code` or `signal` (or `handed_back`, when the worker shuts
  down: the task goes back to the queue unfailed). The server ends the attempt by the
  completion rule, answers with `task` set (and STOP: the lease is over) and closes.

Server side: a reader drains the worker's messages into a Batch as fast as they come; one
writer hands each batch to the process's group commit (jobtask.server.group_commit: one
transaction for the batches of every stream waiting at that moment) and then acknowledges
it (`acked_seq` = the highest `seq` applied, durable). Output, success and the exit are
applied at once; progress, log chunks and heartbeats at most every COALESCE_SECONDS. So a
worker sending 1,000 progress updates a second costs at most ten commits a second. Each
response carries the renewed lease and the instruction: CONTINUE, CANCEL (the task or its
job was canceled or paused; stop the process, then report the exit) or STOP (the lease is
lost; stop, report nothing more). The stream also wakes on the process's change signal to
re-read the task, so a cancel reaches an idle worker without waiting for its next message.

A stream refused for an invalid message ends its attempt: the seeds' temporary failure. One
that is merely cut (the client gone or only its connection: a proxy restarted, a network
blip; or this server shutting down) leaves the lease to its ttl: the worker may reopen
RunTask with it (on this replica or another) before it expires, and the reaper ends the
attempt of one that never comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from jobtask.domain.errors import Aborted, DomainError, InvalidArgument, NotFound, Unavailable
from jobtask.domain.reports import Batch, Instruction, Report, Verdict, verdict
from jobtask.domain.uuids import TASK_INFIX, check_uuid
from jobtask.manager.context import Caller, Settings
from jobtask.manager.reports import Outcome, ReportManager, Submission
from jobtask.observability.logs import emit
from jobtask.server.changes import ChangeSignal
from jobtask.server.convert import fill_task, stamp, task_fields
from jobtask.server.group_commit import GroupCommit
from jobtask.v1 import task_service_pb2

log = logging.getLogger(__name__)

# A stream re-reads its task at most this often when the store signals changes.
STATUS_CHECK_SECONDS = 0.25
# Progress, log chunks and heartbeats are committed at most this often per stream; output,
# success and the exit at once. So a worker's report rate never sets the commit rate.
COALESCE_SECONDS = 0.1

_INSTRUCTION_PB = {
    Instruction.CONTINUE: task_service_pb2.INSTRUCTION_CONTINUE,
    Instruction.CANCEL: task_service_pb2.INSTRUCTION_CANCEL,
    Instruction.STOP: task_service_pb2.INSTRUCTION_STOP,
}


def report_from(msg: task_service_pb2.RunTaskRequest) -> Report:
    """A worker's message as a Report; InvalidArgument (naming the field) if malformed."""
    return Report(
        seq=msg.seq,
        progress=msg.progress if msg.HasField("progress") else None,
        output=msg.output if msg.HasField("output") else None,
        success=msg.success if msg.HasField("success") else None,
        log=msg.log,
        exit_code=msg.exit_code if msg.HasField("exit_code") else None,
        signal=msg.signal if msg.HasField("signal") else None,
        handed_back=msg.handed_back,
    )


def first_ends(msg: task_service_pb2.RunTaskRequest) -> bool:
    return msg.HasField("exit_code") or msg.HasField("signal") or msg.handed_back


class RunTasks:
    """What every RunTask stream of one process shares, and the streams' cleanups."""

    def __init__(self, reports: ReportManager, signal: ChangeSignal, settings: Settings) -> None:
        self.reports = reports
        self.signal = signal
        self.settings = settings
        # Set while the server shuts down: cut streams keep their leases.
        self.closing = False
        self._cleanups: set[asyncio.Task[None]] = set()
        self.commits = GroupCommit(reports, self.spawn)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Runs a cleanup to its end even if the stream's own task is canceled."""
        task = asyncio.ensure_future(self._logged(work))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def _logged(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except DomainError as exc:
            log.warning("ending an abandoned attempt failed: %s", exc.message)

    async def drain(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)

    def stream(
        self, caller: Caller, requests: AsyncIterator[task_service_pb2.RunTaskRequest]
    ) -> AsyncIterator[task_service_pb2.RunTaskResponse]:
        return RunTaskStream(self, caller).run(requests)


class RunTaskStream:
    def __init__(self, runs: RunTasks, caller: Caller) -> None:
        self.runs = runs
        self.reports = runs.reports
        self.caller = caller
        self.task_uuid = ""
        self.lease_id = ""
        self.pending = Batch()
        self.wake = asyncio.Event()
        self.reader_done = False
        self.error: InvalidArgument | None = None
        self.acked = 0
        # The attempt needs no ending by us: its exit was applied, or the lease is not ours.
        self.settled = False
        self.status_dirty = False
        self.last_check = 0.0
        self.last_alive = time.monotonic()
        self.last_apply = 0.0

    async def run(
        self, requests: AsyncIterator[task_service_pb2.RunTaskRequest]
    ) -> AsyncIterator[task_service_pb2.RunTaskResponse]:
        messages = aiter(requests)
        first = await anext(messages, None)
        if first is None or not first.task_uuid:
            raise InvalidArgument("task_uuid", "is required in the first message")
        if not first.lease_id:
            raise InvalidArgument("lease_id", "is required in the first message")
        self.task_uuid, self.lease_id = first.task_uuid, first.lease_id
        if first_ends(first):
            # A task reported whole in one message (a short task): its batch is applied
            # at once and checks the lease itself, so the opening read is skipped.
            check_uuid(self.task_uuid, TASK_INFIX, "task_uuid")
        else:
            opened = await self.reports.check(self.caller, self.task_uuid, self.lease_id)
            if opened.verdict.instruction is Instruction.STOP:
                yield self._response(opened)
                return
        # A reopened stream (after a reconnect) logs it again, with the same lease.
        emit("task_started", task_uuid=self.task_uuid, caller_uuid=self.caller.user_uuid)
        # That read (or the first batch's) counts as the stream's first status check.
        self.last_check = time.monotonic()
        reader = asyncio.create_task(self._read(first, messages))
        watcher = asyncio.create_task(self._watch())
        store_failed = False
        try:
            async for response in self._loop():
                yield response
        except (Unavailable, Aborted):
            # The store failed, not the worker: like a shutdown, the lease lives on.
            store_failed = True
            raise
        finally:
            reader.cancel()
            watcher.cancel()
            # A cut stream leaves its lease to its ttl (the worker may reconnect and carry
            # on; see WorkerSession's _abandon_held); an invalid message ends the attempt.
            if (
                not self.settled
                and not self.runs.closing
                and not store_failed
                and self.error is not None
            ):
                reason = f"the worker sent an invalid message ({self.error.message})"
                cleanup = self.runs.spawn(
                    self.reports.abandon(self.caller, self.task_uuid, self.lease_id, reason)
                )
                # Shielded: a canceled call (the client left) still ends its attempt.
                await asyncio.shield(cleanup)

    async def _read(
        self,
        first: task_service_pb2.RunTaskRequest,
        messages: AsyncIterator[task_service_pb2.RunTaskRequest],
    ) -> None:
        try:
            msg: task_service_pb2.RunTaskRequest | None = first
            while msg is not None:
                if msg.task_uuid and msg.task_uuid != self.task_uuid:
                    raise InvalidArgument("task_uuid", "must name the stream's task")
                if msg.lease_id and msg.lease_id != self.lease_id:
                    raise InvalidArgument("lease_id", "must name the stream's lease")
                report = report_from(msg)
                self.pending.add(report)
                self.wake.set()
                if report.ends:
                    return  # nothing after the exit is read
                msg = await anext(messages, None)
        except InvalidArgument as exc:
            self.error = exc
        except Exception as exc:  # the transport failed: the stream is over either way
            log.debug("RunTask stream of %s broke: %r", self.task_uuid, exc)
        finally:
            self.reader_done = True
            self.wake.set()

    async def _watch(self) -> None:
        """Marks the task's status for a re-read whenever the store signals a change.

        The loop re-reads at most every STATUS_CHECK_SECONDS, so the signals of one such
        window are taken as one: an idle stream wakes that often at most, however many
        commits other streams make (with 100 streams open, waking each on every commit
        cost more CPU than the commits themselves). The next mark is taken before the
        loop's re-read, so a commit after that read still wakes this watch."""
        signal = self.runs.signal
        while True:
            mark = signal.mark()
            await signal.wait(since=mark)
            not_before = self.last_check + STATUS_CHECK_SECONDS - time.monotonic()
            if not_before > 0:
                await asyncio.sleep(not_before)
            self.status_dirty = True
            self.wake.set()

    async def _loop(self) -> AsyncIterator[task_service_pb2.RunTaskResponse]:
        told = Instruction.CONTINUE
        while True:
            if not self.pending and not self.reader_done:
                await self._sleep()
            if self.pending and not self.pending.urgent:
                await self._coalesce()
            if self.pending:
                self.last_apply = time.monotonic()
                batch, self.pending = self.pending, Batch()
                outcome = await self.runs.commits.apply(
                    Submission(self.caller, self.task_uuid, self.lease_id, batch, self._alive())
                )
                self.acked = max(self.acked, batch.seq)
                self.last_check, self.status_dirty = time.monotonic(), False
                told = outcome.verdict.instruction
                yield self._response(outcome)
                if outcome.finished is not None or told is Instruction.STOP:
                    self.settled = True
                    return
                continue
            if self.reader_done:
                if self.error is not None:
                    raise self.error
                return
            if self.status_dirty and time.monotonic() - self.last_check >= STATUS_CHECK_SECONDS:
                self.status_dirty = False
                self.last_check = time.monotonic()
                try:
                    outcome = await self.reports.check(self.caller, self.task_uuid, self.lease_id)
                except NotFound:  # deleted meanwhile: the lease went with it
                    outcome = Outcome(verdict(None, None, False))
                if outcome.verdict.instruction is not told:
                    told = outcome.verdict.instruction
                    yield self._response(outcome)
                if told is Instruction.STOP:
                    self.settled = True
                    return

    async def _coalesce(self) -> None:
        """Lets routine reports pile up until the stream's next commit is due, unless a
        decision or the end arrives meanwhile. (A change signal does not cut the wait short:
        every commit raises it, this stream's own included, and the batch's commit reads
        the task's status anyway.)"""
        due = self.last_apply + COALESCE_SECONDS
        while not (self.pending.urgent or self.reader_done):
            remaining = due - time.monotonic()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), remaining)
            self.wake.clear()

    async def _sleep(self) -> None:
        timeout = None
        if self.status_dirty:
            timeout = max(0.0, self.last_check + STATUS_CHECK_SECONDS - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)
        self.wake.clear()

    def _alive(self) -> bool:
        """Whether to refresh the worker's liveness with this batch (once a heartbeat)."""
        now = time.monotonic()
        if now - self.last_alive < self.runs.settings.heartbeat_interval.total_seconds():
            return False
        self.last_alive = now
        return True

    def _response(self, outcome: Outcome) -> task_service_pb2.RunTaskResponse:
        told: Verdict = outcome.verdict
        finished = outcome.finished
        response = task_service_pb2.RunTaskResponse(
            acked_seq=self.acked,
            instruction=_INSTRUCTION_PB[told.instruction],
            reason=told.reason,
            # (The finished task's message built in place, not apart and copied in.)
            task=None if finished is None else task_fields(finished),
        )
        response.lease.lease_id = self.lease_id
        response.lease.ttl.FromTimedelta(self.runs.settings.lease_ttl)
        if outcome.lease_expires_at is not None:
            stamp(response.lease.expires_at, outcome.lease_expires_at)
        if finished is not None:
            fill_task(response.task, finished)
        return response
