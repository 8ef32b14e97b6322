"""A registered function the worker's session carries: the short way a task can run.

The function runs in the run's own asyncio task with nothing beside it: no conversation
task, no timer, no event of its own. What it reports is queued on the session as it comes
(output and success at once, log and progress when due); its exit when it returns, and
the run's task ends there. The session's one watch timer (SessionLink.watch) flushes the
log when due and is the run's lease watchdog; the server's answer, the watchdog or a lost
lease settles the run by a callback. A conversation task beside each function, and the
wake-ups between the two, cost several times what a short function costs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from jobtask.v1 import job_task_pb2, task_service_pb2
from jobtask.worker.config import WorkerConfig
from jobtask.worker.functions import FunctionRun, TaskContext, TaskFunction
from jobtask.worker.run import Run, closing_note, ignored, opening_note, unheard
from jobtask.worker.session import Grant, SessionLease, SessionLink

# Hears a run over, with its task as the server decided it (None: the lease was lost).
Over = Callable[[Run, job_task_pb2.JobTask | None], None]
# (The worker agent's logger: its errors running a task were logged there.)
log = logging.getLogger("jobtask.worker.agent")


class CarriedRun(Run):
    stream: SessionLease
    # Who hears the decision (until told), whether the exit is queued and the decision
    # awaited, and whether a flush of urgent reports is on its way (class defaults: see
    # Run's).
    _on_over: Over | None = None
    _awaiting = False
    _flush_queued = False
    _carrying = False  # (carry() has begun: a plain function's reports need the loop)

    def __init__(
        self,
        config: WorkerConfig,
        assignment: task_service_pb2.TaskAssignment,
        slot: int,
        link: SessionLink,
        grant: Grant,
        function: TaskFunction,
    ) -> None:
        Run.__init__(self, config, assignment, slot)  # (see SessionLease.__init__)
        self.function = function
        self.stream = link.lease(
            self.task_uuid, grant, on_instruction=self._instructed, on_news=self._news
        )

    async def run(self) -> job_task_pb2.JobTask | None:
        """Runs the task to its end; the task as decided, or None if the lease was lost."""
        decision: asyncio.Future[job_task_pb2.JobTask | None]
        decision = asyncio.get_running_loop().create_future()
        await self.carry(lambda run, decided: decision.set_result(decided))
        return await decision

    async def carry(
        self, over: Over, own_task: bool = False, freed: Callable[[Run], None] | None = None
    ) -> None:
        """Runs the function in this task; returns once its exit is queued. `over` hears
        the run and its task as the server decided it (None if the lease was lost), once:
        from the session's answer, the watchdog, or before this returns if no answer is to
        come. `freed` hears the run as its exit is queued, when a decision is still to come:
        the function is over, so its slot is free while the exit travels (see
        jobtask.worker.agent). With `own_task` (the worker's: the task this runs in is
        `self.task`, the run's own, with no coroutine of the worker's around this one), this
        logs an error of the worker's own instead of raising it."""
        lease = self.stream
        self._on_over = over
        try:
            self._carrying = True
            # The opening note waits in the outbox: the watch below looks at the run no
            # later than its log is due (within a tick, at most log_flush_seconds).
            self._first_pending = time.monotonic()
            config = self.config
            self.outbox.add_log(opening_note(self.attempt, config.node_name, config.worker_id))
            process = self.process = FunctionRun(
                self.function,
                TaskContext(self.assignment, config.client, self._reported, self._log),
            )
            if self.handing_back:
                process.terminate(self.config.kill_grace)
            lease.link.watch(lease, self._on_tick)
            # (The worker's task is this run's own: no asyncio.current_task() to find it.)
            self.exit = await process.wait(self.task if own_task else None)
            if self._expired or lease.lost_reason is not None:
                return  # (nothing more is sent: not the closing note either)
            self.outbox.add_log(closing_note(self.attempt, self.exit))
            self._exit_sent = True
            self._first_pending = None
            # (Made in the session's next message: no copy of it made there.)
            self._exit_message(self.exit, lease.new_report())
            self._awaiting = lease.final is None
            if freed is not None and self._awaiting:
                freed(self)
        except Exception:
            if not own_task:
                raise
            log.exception("task %s: the worker failed running it", self.task_uuid)
        finally:
            if not self._awaiting:
                self._settle()

    def _settle(self) -> None:
        """Over: the lease and the function no longer call back into the run (so that it
        is freed at once, not by the cyclic garbage collector, whose passes over thousands
        of finished runs a second cost more than the runs), and `over` hears the decision."""
        over, self._on_over = self._on_over, None
        if over is None:
            return
        self._awaiting = False
        lease = self.stream
        lease.forget()
        lease.on_instruction = ignored
        lease.on_news = unheard
        self.process = None
        over(self, None if self._expired else lease.final)

    def _news(self) -> None:
        """Something arrived for the lease: the decision, or the lease is lost."""
        if self._awaiting and (self.stream.final is not None or self.stream.lost_reason):
            self._settle()

    def _wake(self) -> None:
        process = self.process
        if self._flush_queued or not isinstance(process, FunctionRun) or process.ended:
            return  # an ended function's exit is about to carry it
        self._flush_queued = True
        # A plain function reports from its thread of the pool.
        self.stream.link.loop.call_soon_threadsafe(self._flush_queued_reports)

    def _flush_queued_reports(self) -> None:
        self._flush_queued = False
        if not self._exit_sent and not self.outbox.empty():
            self._post_outbox()

    def _post_outbox(self) -> None:
        if self.stream.lost_reason is None:
            self._first_pending = None
            self.stream.post(self.outbox.take())

    def _pending(self) -> None:
        if self._first_pending is not None:
            return
        self._first_pending = time.monotonic()
        if self._carrying:
            # The session's watch timer looks at the run when its log is due.
            due = self._first_pending + self.config.log_flush_seconds
            link = self.stream.link
            if threading.get_ident() == link.loop_thread:
                link.wake_by(due)
            else:  # a plain function's thread
                link.loop.call_soon_threadsafe(link.wake_by, due)

    def _on_tick(self, now: float) -> float:
        """The run's watch (SessionLink.watch): the lease watchdog, and the log and
        progress when due; the next time it is due."""
        deadline = self.stream.deadline()
        if now >= deadline:
            self.stream.on_tick = None
            self._expire(now)
            if self._awaiting:
                self._settle()
        elif not self._exit_sent and self._flush_due(now):
            self._post_outbox()
        elif self._first_pending is not None:
            return min(deadline, self._first_pending + self.config.log_flush_seconds)
        return deadline
