"""The worker's one WorkerSession stream, shared by all of its tasks.

`SessionLink` keeps the stream up (reopening it with backoff when it breaks), sends
everything queued since its last write as one message (reports of many tasks, credits for
freed slots, the heartbeat; but the tasks of each message of assignments in a message of
their own, see SessionLink._seal), and routes what comes down: assignments to the agent,
each task's acknowledgements and instructions to its `SessionLease`. One heartbeat every
third of a lease's ttl renews all of the session's leases.

`SessionLease` is a task's view of the session with the interface of its RunTask stream
(jobtask.worker.stream.LeaseStream), so a task's run (jobtask.worker.runner) reads the same
whichever carries it. Its unacknowledged reports are kept and sent again on the next
session after a reconnect, which also reattaches the lease to the new session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from jobtask.sdk.client import AsyncClient
from jobtask.sdk.errors import PermissionDeniedError, UnauthenticatedError, from_rpc_error
from jobtask.v1 import task_service_pb2
from jobtask.worker.lease import LeaseLost, StreamBroken, TaskLease

log = logging.getLogger(__name__)

Instruction = task_service_pb2.Instruction
DEFAULT_TTL = 30.0
MAX_BACKOFF = 5.0
# The session sends a message (a heartbeat if nothing else) at least this often, idle or
# busy, and says so when it opens (WorkerInfo.heartbeat_interval): the server then stops
# assigning tasks to a worker it has not heard from for two of these (one stopped or hung).
HEARTBEAT_INTERVAL = 2.0
# Reports of one message at most (the server's bound is larger).
MAX_REPORTS = 500
# The watch timer's shortest interval.
MIN_SWEEP = 0.005

# What the session read of an assignment's lease as it handed the assignment out: the lease
# id, its ttl in seconds (0: none given) and when the message arrived, the date of the
# lease's grant (the clock read once a message, not once a task). Each read of a message
# field costs, so these are read once, where the assignment arrives.
Grant = tuple[str, float, float]


def grant_of(assignment: task_service_pb2.TaskAssignment, granted_at: float) -> Grant:
    granted = assignment.lease
    duration = granted.ttl
    # (seconds(), written out: this runs for every assignment.)
    return granted.lease_id, duration.seconds + duration.nanos / 1e9, granted_at


class SessionLink:
    def __init__(
        self,
        client: AsyncClient,
        info: Callable[[], task_service_pb2.WorkerInfo],
        on_assignment: Callable[[task_service_pb2.TaskAssignment, Grant], None],
        tick: float = 1.0,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.client = client
        self.heartbeat_interval = heartbeat_interval
        self.info = info
        self.on_assignment = on_assignment
        self.leases: dict[str, SessionLease] = {}
        self.ttl = DEFAULT_TTL
        # The watch timer: one for all watched leases (see watch()), not one per task.
        self.tick = tick
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_when = 0.0
        # The messages waiting to be sent, oldest first, each with MAX_REPORTS reports at
        # most; `_reports` are the reports of the last while it takes more (None: a new
        # message for the next report). A report is made in its message (new_report()) or
        # copied in (enqueue()): one made in place costs ~5,000 instructions less than one
        # made apart and copied in (upb copies a message by encoding and decoding it).
        self._outgoing: list[task_service_pb2.WorkerSessionRequest] = []
        self._reports: Any = None
        self._credits = 0
        self._heartbeat = False
        # When each heartbeat still unanswered was sent, oldest first.
        self._beats: collections.deque[float] = collections.deque()
        self._wake = asyncio.Event()
        # Set with _wake by credit() and enqueue(), cleared with it by the writer: while
        # it is set, the next of the many credits and reports a message gathers (one or
        # two a task) need not call into the Event again.
        self._woken = False
        self._call: Any = None
        self._connected = asyncio.Event()
        self._closing = False
        # The loop (and its thread) the session runs on, asked once: in CPython 3.11 every
        # asyncio.get_running_loop() is a getpid() system call, a few per task otherwise.
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()

    # -- called by the agent and the leases ---------------------------------------------------

    def credit(self, slots: int = 1) -> None:
        """Slots freed: the server may assign this many more tasks."""
        self._credits += slots
        if not self._woken:
            self._woken = True
            self._wake.set()

    def lease(
        self,
        task_uuid: str,
        grant: Grant,
        *,
        on_instruction: Callable[[int, str], None],
        on_news: Callable[[], None],
    ) -> SessionLease:
        """The lease of the assignment of task `task_uuid`, as _read granted it."""
        lease_id, ttl, granted_at = grant
        lease = SessionLease(
            self,
            task_uuid,
            lease_id,
            ttl if ttl > 0 else self.ttl,
            on_instruction=on_instruction,
            on_news=on_news,
            granted_at=granted_at,
        )
        self.leases[task_uuid] = lease
        return lease

    def watch(self, lease: SessionLease, on_tick: Callable[[float], float]) -> None:
        """Calls `on_tick(time.monotonic())` for the lease at its watchdog deadline, when
        the call last returned (the next time it wants one) or wake_by() asked, and at
        least every tick (and every third of its ttl), until the lease's on_tick is None
        again. One timer serves every watched lease of the session: a task that ends
        within a tick costs no timer of its own (its run flushes its log and watches its
        lease from these calls)."""
        lease.on_tick = on_tick
        when = min(lease.deadline(), time.monotonic() + self.tick)
        if self._sweep is None or self._sweep_when > when:  # (wake_by's test, written out)
            self.wake_by(when)

    def wake_by(self, when: float) -> None:
        """The watched leases are looked at no later than `when` (time.monotonic())."""
        if self._sweep is not None:
            if self._sweep_when <= when:
                return
            self._sweep.cancel()
        self._sweep_when = when
        self._sweep = self.loop.call_later(when - time.monotonic(), self._on_sweep)

    def _on_sweep(self) -> None:
        self._sweep = None
        now = time.monotonic()
        when = now + self.tick
        watched = False
        for lease in list(self.leases.values()):
            if lease.on_tick is not None:
                try:
                    wanted = lease.on_tick(now)
                except Exception:
                    # One run's failure must not end the other leases' watchdog.
                    log.exception("task %s: its lease watch failed", lease.task_uuid)
                    wanted = now + self.tick
                if lease.on_tick is not None:  # (the call may have ended the watch)
                    watched = True
                    when = min(when, wanted, now + lease.ttl / 3)
        if watched:
            # A deadline that passed was acted on: not again at once.
            self.wake_by(max(when, now + MIN_SWEEP))

    def enqueue(self, message: task_service_pb2.RunTaskRequest) -> None:
        """Sends a copy of `message` with the next message."""
        self._reports_to_send().append(message)

    def new_report(self) -> task_service_pb2.RunTaskRequest:
        """An empty report, made in the next message to send: the caller fills it in before
        it next yields to the loop (the writer sends it then)."""
        report: task_service_pb2.RunTaskRequest = self._reports_to_send().add()
        return report

    def queued(self) -> list[task_service_pb2.RunTaskRequest]:
        """The reports waiting to be sent, in order."""
        return [report for message in self._outgoing for report in message.reports]

    def _reports_to_send(self) -> Any:
        reports = self._reports
        if reports is None or len(reports) >= MAX_REPORTS:
            message = task_service_pb2.WorkerSessionRequest()
            self._outgoing.append(message)
            reports = self._reports = message.reports
        if not self._woken:
            self._woken = True
            self._wake.set()
        return reports

    def _seal(self) -> None:
        """New assignments came: the reports and credits queued so far (the tasks of the
        assignments before) make a message of their own, and the new tasks' reports begin
        the next. So each message of assignments is answered by one message, even when the
        writer was still waiting for a write: the server decides the groups by how it hands
        the tasks out (on PostgreSQL, and the store-less bench.bare, in two parts of half
        the slots, groups that take turns: one group's reports travel and are answered
        while the other's tasks run; on SQLite in one), and one message of two groups'
        credits would be answered by one message, the groups running as one from then."""
        if self._reports is not None:
            self._outgoing[-1].credits = self._credits
            self._credits = 0
            self._reports = None

    def forget(self, lease: SessionLease) -> None:
        if self.leases.get(lease.task_uuid) is lease:
            del self.leases[lease.task_uuid]
            if self._closing and not self.leases:
                # The session ends once its last lease is over: a run's decision may
                # come after close() (its task ended as its exit was queued).
                self._wake.set()

    async def close(self) -> None:
        """Ends the session once everything queued is sent (after the tasks ended)."""
        self._closing = True
        self._wake.set()

    # -- the stream ---------------------------------------------------------------------------

    async def run(self, stop_claiming: asyncio.Event) -> None:
        """Keeps a session open until close(); raises if the token is refused."""
        backoff = 0.2
        while not self._closing or self._outgoing:
            self._call = self.client.worker_session()
            self._beats.clear()  # a new session: the old one's heartbeats get no answer
            reader = asyncio.create_task(self._read(self._call))
            try:
                info = self.info()
                if stop_claiming.is_set():
                    info.free_slots = 0
                info.heartbeat_interval.FromNanoseconds(int(self.heartbeat_interval * 1e9))
                await self._call.write(task_service_pb2.WorkerSessionRequest(open=info))
                # Credits so far are in the opening message's free slots.
                self._credits = 0
                self._reattach()
                self._connected.set()
                await self._send_until_closed(reader, stop_claiming)
                if reader.done():
                    reader.result()
                return
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc)
                if isinstance(error, (UnauthenticatedError, PermissionDeniedError)):
                    raise error from None
                log.warning("worker session broken (%s), reopening in %.1fs", error, backoff)
            except (StreamBroken, asyncio.InvalidStateError) as exc:
                log.warning("worker session broken (%s), reopening in %.1fs", exc, backoff)
            finally:
                self._connected.clear()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await reader
                self._call.cancel()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _reattach(self) -> None:
        """After a reconnect: every live lease's unacknowledged reports, or an empty one
        that attaches the lease to this session."""
        self._outgoing = []
        self._reports = None
        for lease in self.leases.values():
            if lease.final is not None or lease.lost_reason is not None:
                continue
            if lease._unacked:
                for report in lease._unacked:
                    self.enqueue(report)
            else:
                self.enqueue(
                    task_service_pb2.RunTaskRequest(
                        task_uuid=lease.task_uuid, lease_id=lease.lease_id
                    )
                )

    async def _send_until_closed(
        self, reader: asyncio.Task[None], stop_claiming: asyncio.Event
    ) -> None:
        last_beat = last_sent = time.monotonic()
        while True:
            if reader.done():
                reader.result()
                raise StreamBroken("the server ended the session")
            now = time.monotonic()
            beat_due = last_beat + self.ttl / 3 - now if self.leases else math.inf
            # The promised message: a worker that sends nothing reads as hung.
            word_due = last_sent + self.heartbeat_interval - now
            if beat_due <= 0 or word_due <= 0:
                self._heartbeat = True
                last_beat = now
            outgoing = self._outgoing
            if outgoing or self._heartbeat or (self._credits and not stop_claiming.is_set()):
                # Everything queued meanwhile goes in one message (MAX_REPORTS at most).
                if outgoing:
                    message = outgoing.pop(0)
                    if not outgoing:
                        self._reports = None  # (no more reports in a message sent)
                else:
                    message = task_service_pb2.WorkerSessionRequest()
                if self._heartbeat:
                    message.heartbeat = True
                    self._beats.append(time.monotonic())
                    self._heartbeat = False
                if stop_claiming.is_set():
                    message.credits = 0  # (any sealed before the stop)
                elif not outgoing:
                    # The last message: the credits not sealed into an earlier one.
                    message.credits += self._credits
                    self._credits = 0
                await self._call.write(message)
                last_sent = time.monotonic()
                continue
            if self._closing and not self.leases:
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    await self._call.done_writing()
                return
            self._wake.clear()
            self._woken = False
            waiter = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait(
                {waiter, reader},
                timeout=max(min(beat_due, word_due), 0.05),
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
            if not self.leases:
                last_beat = time.monotonic()

    async def _read(self, call: Any) -> None:
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:  # type: ignore[attr-defined]
                return
            granted_at = time.monotonic()
            assignments = response.assignments
            if assignments:
                self._seal()
            for assignment in assignments:
                grant = grant_of(assignment, granted_at)
                if grant[1] > 0:
                    self.ttl = grant[1]
                self.on_assignment(assignment, grant)
            # A heartbeat's answer renewed every lease it names, no earlier than the
            # heartbeat was sent (see TaskLease.renewed_at). The server answers heartbeats
            # that arrive while it is busy once, together: the answer is dated by the oldest
            # one waiting and the rest are forgotten (an answer for one of them finds none
            # and renews nothing) -- popping one a time would date every later answer a beat
            # too early for each merge, until the watchdog killed healthy processes.
            beat = None
            if response.heartbeat_acked and self._beats:
                beat = self._beats[0]
                self._beats.clear()
            for update in response.updates:
                lease = self.leases.get(update.task_uuid)
                if lease is not None and lease.lease_id == update.lease.lease_id:
                    if beat is not None and update.instruction != Instruction.INSTRUCTION_STOP:
                        lease.renewed(beat)
                    lease.receive(update)


class SessionLease(TaskLease):
    """One task's lease, carried by the worker's session (see the module's docstring)."""

    def __init__(
        self,
        link: SessionLink,
        task_uuid: str,
        lease_id: str,
        ttl: float,
        *,
        on_instruction: Callable[[int, str], None],
        on_news: Callable[[], None],
        granted_at: float | None = None,
    ) -> None:
        # (The base named, not super(): a super object and its lookup for every task.)
        TaskLease.__init__(self, task_uuid, lease_id, ttl, on_instruction, on_news, granted_at)
        self.link = link
        # Set while the link's watch timer calls the lease's run (SessionLink.watch).
        self.on_tick: Callable[[float], float] | None = None

    async def connect(self) -> None:
        """The session carries the lease already (and reattaches it after a reconnect)."""
        self.check()

    async def send(self, message: task_service_pb2.RunTaskRequest) -> None:
        self.post(message)

    def post(self, message: task_service_pb2.RunTaskRequest) -> None:
        """send() without the await: the session's writer sends what is queued."""
        if not message.ListFields():
            self.check()
            return  # a heartbeat: the session's own renews every lease at once
        self.report(message)

    def report(self, message: task_service_pb2.RunTaskRequest) -> None:
        """post() for a message that carries something (an exit always does)."""
        if self.lost_reason is not None:  # (check(), written out)
            raise LeaseLost(self.lost_reason)
        self._number(message)
        message.task_uuid = self.task_uuid
        message.lease_id = self.lease_id
        self.link.enqueue(message)

    def new_report(self) -> task_service_pb2.RunTaskRequest:
        """report() for a message made in the session's next message (SessionLink.new_report),
        numbered and addressed: the caller fills in the rest before it next yields."""
        if self.lost_reason is not None:  # (check(), written out)
            raise LeaseLost(self.lost_reason)
        message = self.link.new_report()
        self._number(message)
        message.task_uuid = self.task_uuid
        message.lease_id = self.lease_id
        return message

    async def close(self) -> None:
        self.forget()

    def forget(self) -> None:
        self.on_tick = None
        self.link.forget(self)
