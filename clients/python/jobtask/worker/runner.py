"""Running one claimed task: its script, its RunTask stream, and what flows between them.

Stdout and stderr become the task log (flushed every `log_flush_seconds` or
`log_flush_bytes`); report lines (jobtask.worker.reports) become progress, output and
success, coalesced between sends; a heartbeat goes out when nothing else did for a third
of the lease's ttl. CANCEL from the server stops the process group politely (SIGINT,
SIGTERM, SIGKILL, `kill_grace` apart); STOP kills it at once. The exit is reported last,
with `handed_back` when the worker is shutting down, so the task is queued again rather
than failed. A broken stream is reopened (same address, same lease) with backoff for up to
one ttl. Whatever the stream looks like (a silent partition leaves it hanging, not
broken), a watchdog kills the process a margin before the lease can expire unrenewed, by the
worker's own clock, so the task never runs on two workers at once.

A registered function the worker's session carries takes a shorter way
(jobtask.worker.carried); what both kinds share is in jobtask.worker.run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time

from jobtask.sdk.client import AsyncClient
from jobtask.v1 import job_task_pb2, task_service_pb2
from jobtask.worker import functions
from jobtask.worker.config import WorkerConfig
from jobtask.worker.environment import (
    Connection,
    ScriptError,
    TaskPlace,
    command_for,
    resolve_script,
    task_environment,
)
from jobtask.worker.functions import Functions
from jobtask.worker.lease import LeaseLost, StreamBroken, seconds
from jobtask.worker.process import Exit, ScriptProcess
from jobtask.worker.run import Run, ignored, note
from jobtask.worker.session import Grant, SessionLease, SessionLink
from jobtask.worker.stream import LeaseStream

log = logging.getLogger(__name__)

DEFAULT_TTL = 30.0
# Exit codes a shell would give for a command it could not find or not run.
EXIT_NOT_FOUND = 127
EXIT_CANNOT_RUN = 126


class TaskRun(Run):
    stream: LeaseStream | SessionLease

    def __init__(
        self,
        client: AsyncClient,
        config: WorkerConfig,
        assignment: task_service_pb2.TaskAssignment,
        slot: int,
        link: SessionLink | None = None,
        functions: Functions | None = None,
        grant: Grant | None = None,
    ) -> None:
        """`link`: the session that carries the task, and `grant` the assignment's lease
        as it read it (without a link: a RunTask stream of the task's own)."""
        super().__init__(config, assignment, slot)
        self.client = client
        self.function = functions.get(assignment.job.script) if functions is not None else None
        # Set when anything happened that the conversation must look at.
        self.poke = asyncio.Event()
        # The worker's session carries the task (or, without one, its own RunTask stream).
        if link is not None:
            assert grant is not None
            self.stream = link.lease(
                self.task_uuid,
                grant,
                on_instruction=self._instructed,
                on_news=self._news,
            )
        else:
            ttl = seconds(assignment.lease.ttl)
            self.stream = LeaseStream(
                client,
                self.task_uuid,
                assignment.lease.lease_id,
                ttl if ttl > 0 else DEFAULT_TTL,
                on_instruction=self._instructed,
                on_news=self._news,
            )
        self._runner: asyncio.Task[job_task_pb2.JobTask | None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0

    # -- called from outside ----------------------------------------------------------------

    async def run(self) -> job_task_pb2.JobTask | None:
        """Runs the task to its end; the task as decided, or None if the lease was lost."""
        # A function needs no working directories (and making them costs more than it).
        place = None if self.function is not None else self._prepare()
        process_task = asyncio.create_task(self._run_process(place))
        # The conversation runs in this task; the lease watchdog is a timer that cancels
        # it (as asyncio.timeout does) when the lease can no longer be ours.
        self._runner = asyncio.current_task()
        self._watch_lease()
        try:
            decided = await self._converse()
        except asyncio.CancelledError:
            if not self._expired or self._uncancel() > 0:
                raise  # cancelled by someone else too
            return None  # the lease cannot be ours any more; the process is stopped
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.process is not None and self.exit is None:
                self.process.kill()
            with contextlib.suppress(asyncio.CancelledError):
                await process_task
            await self.stream.close()
            if place is not None:
                shutil.rmtree(place.task_work, ignore_errors=True)
            # Over: the lease's and the process's callbacks into this run are dropped, so
            # that it is freed at once, not by the cyclic garbage collector (whose passes
            # over thousands of finished runs a second cost more than the runs).
            self.stream.on_instruction = ignored
            self.process = None
        if self._expired:
            # The watchdog fired, and its cancel was swallowed on the way (a suppress):
            # the lease is gone all the same.
            self._uncancel()
            return None
        return decided

    def _news(self) -> None:
        self.poke.set()

    def _wake(self) -> None:
        self.poke.set()

    def _uncancel(self) -> int:
        assert self._runner is not None
        return self._runner.uncancel()

    # -- the process --------------------------------------------------------------------

    def _prepare(self) -> TaskPlace:
        crunch_tmp = self.config.crunch_tmp
        task_work = crunch_tmp / "task" / f"{self.config.node_name}.{self.slot}"
        job_work = crunch_tmp / "work" / self.assignment.job.uuid
        shutil.rmtree(task_work, ignore_errors=True)
        task_work.mkdir(parents=True)
        job_work.mkdir(parents=True, exist_ok=True)
        return TaskPlace(
            node_name=self.config.node_name,
            slot=self.slot,
            slots=self.config.slots,
            crunch_tmp=crunch_tmp,
            job_work=job_work,
            task_work=task_work,
        )

    async def _run_process(self, place: TaskPlace | None) -> None:
        self._log(self._opening_note())
        try:
            exit_status = await self._start_and_wait(place)
            self._log(self._closing_note(exit_status))
            self.exit = exit_status
        finally:
            self._wake()

    async def _start_and_wait(self, place: TaskPlace | None) -> Exit:
        if self.function is not None or place is None:
            assert self.function is not None
            # A function registered under the script's name runs in this process.
            self.process = functions.start(
                self.function, self.assignment, self.config.client, self._reported, self._log
            )
            if self.handing_back:
                self.process.terminate(self.config.kill_grace)
            return await self.process.wait()
        try:
            path = resolve_script(self.config.scripts_dir, self.assignment.job.script)
        except ScriptError as exc:
            self._log(note(f"cannot run the task: {exc}"))
            if exc.permanent:
                self.outbox.success = False
            return Exit(exit_code=EXIT_NOT_FOUND)
        env = task_environment(
            self.assignment,
            place,
            Connection(
                jobs_addr=self.config.client.jobs_addr,
                tasks_addr=self.config.client.tasks_addr,
                gateway_addr=self.config.gateway_addr,
            ),
            os.environ,
            self.config.pass_env,
        )
        try:
            self.process = await ScriptProcess.start(
                command_for(path),
                env=env,
                cwd=place.task_work,
                output=self._log,
                report=self._report,
            )
        except OSError as exc:
            self._log(note(f"cannot start {path}: {exc}"))
            return Exit(exit_code=EXIT_CANNOT_RUN)
        if self.handing_back:
            self.process.terminate(self.config.kill_grace)
        log.info("task %s: started %s (pid %d)", self.task_uuid, path.name, self.process.pid)
        exit_status = await self.process.wait()
        log.info("task %s: %s", self.task_uuid, exit_status)
        return exit_status

    def _watch_lease(self) -> None:
        """The lease watchdog: kills the process when the lease cannot have been renewed: a
        ttl (less a margin) after the last answer from the server, by this worker's own
        clock, whatever the connection looks like (a silent partition leaves the stream
        hanging, not failed). The server renewed the lease before answering, so it expires
        no later than that. Checked on the run's timer, at least every tick (the ttl may
        change); it cancels the conversation as asyncio.timeout would."""
        deadline = self.stream.deadline()
        now = time.monotonic()
        if deadline > now:
            # Every tick: the conversation's own waits are a tick at most, so they find
            # the timer armed already (one timer a run, not one per wait).
            self._wake_by(min(deadline, now + self._tick()))
            return
        self._expire(now)
        if self._runner is not None:
            self._runner.cancel()

    # -- the run's one timer ------------------------------------------------------------

    def _tick(self) -> float:
        """How often the conversation looks again with nothing arriving (to flush the log,
        or send a heartbeat), and the watchdog at least every second."""
        return min(1.0, self.config.log_flush_seconds, self.stream.ttl / 3)

    def _wake_by(self, when: float) -> None:
        """Makes the run's timer fire no later than `when` (time.monotonic()). One timer
        serves the watchdog and every wait of the conversation: it fires at the earliest
        time any of them asked for, and each looks again (a wait woken early waits on)."""
        if self._timer is not None:
            if self._timer_when <= when:
                return
            self._timer.cancel()
        self._timer_when = when
        delay = when - time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.poke.set()
        self._watch_lease()

    async def _sleep(self, until: float) -> None:
        """Until poked (something arrived or changed), or `until` at the latest."""
        if not self.poke.is_set():
            self._wake_by(until)
            await self.poke.wait()

    # -- the stream ---------------------------------------------------------------------

    async def _converse(self) -> job_task_pb2.JobTask | None:
        """Keeps the stream up until the task is decided; reconnects when it breaks, until
        a ttl has passed since the server last renewed the lease (it has expired by then)."""
        delay = 0.1
        while True:
            try:
                await self.stream.connect()
                return await self._pump()
            except LeaseLost as exc:
                log.warning("task %s: lease lost: %s", self.task_uuid, exc)
                return None
            except StreamBroken as exc:
                unrenewed = time.monotonic() - self.stream.renewed_at
                if unrenewed >= self.stream.ttl:
                    log.error(
                        "task %s: RunTask stream lost, lease not renewed for %.1fs (%s): "
                        "the lease is gone, killing the process",
                        self.task_uuid,
                        unrenewed,
                        exc,
                    )
                    return None
                log.warning(
                    "task %s: RunTask stream broken (%s), reconnecting", self.task_uuid, exc
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _flush(self) -> None:
        self._first_pending = None
        await self.stream.send(self.outbox.take())

    async def _pump(self) -> job_task_pb2.JobTask | None:
        last_send = time.monotonic()
        while True:
            self.stream.check()
            if self._expired:
                return None
            now = time.monotonic()
            if self.exit is not None:
                # Sent once, with whatever the outbox still holds (a short task is reported
                # whole in one message): after a reconnect it is among those sent again.
                if not self._exit_sent:
                    self._exit_sent = True
                    self._first_pending = None
                    await self.stream.send(self._exit_message(self.exit))
                return await self._final(max(self.stream.ttl, 5.0))
            if self._flush_due(now):
                await self._flush()
                last_send = now
            elif now - last_send >= self.stream.ttl / 3:
                await self.stream.send(task_service_pb2.RunTaskRequest())  # heartbeat
                last_send = now
            self.poke.clear()
            await self._sleep(now + self._tick())

    async def _final(self, within: float) -> job_task_pb2.JobTask | None:
        """After the exit was sent: the task as the server decided it."""
        deadline = time.monotonic() + within
        while self.stream.final is None:
            self.stream.check()
            if time.monotonic() >= deadline:
                raise StreamBroken("no answer to the exit report")
            self.poke.clear()
            await self._sleep(deadline)
        return self.stream.final
