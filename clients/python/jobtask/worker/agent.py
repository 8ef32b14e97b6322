"""The worker agent: claims tasks into free slots and runs each (jobtask.worker.runner).

    stop = asyncio.Event()
    await Worker(WorkerConfig.from_env()).run(stop)     # returns after stop is set

Stopping is graceful: no more claims, running scripts are interrupted, and their tasks are
handed back (queued again, not failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import shutil
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from jobtask.sdk.client import AsyncClient
from jobtask.sdk.errors import JobtaskError, PermissionDeniedError, UnauthenticatedError
from jobtask.v1 import job_task_pb2, task_service_pb2
from jobtask.worker.carried import CarriedRun
from jobtask.worker.config import WorkerConfig
from jobtask.worker.functions import Functions
from jobtask.worker.run import Run
from jobtask.worker.runner import TaskRun
from jobtask.worker.session import Grant, SessionLink

log = logging.getLogger(__name__)

MAX_BACKOFF = 5.0


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        functions: Functions | None = None,
        *,
        on_decided: Callable[[job_task_pb2.JobTask], None] | None = None,
        decided_select: Sequence[str] = (),
    ) -> None:
        self.config = config
        # Called with each task this worker ran, as the server decided it.
        self.on_decided = on_decided
        # The decided task's attributes on_decided reads (WorkerInfo.decided_select, on the
        # session): the server then sends only those, and the uuid and status this worker
        # logs. Empty: the whole task.
        self.decided_select = (
            tuple(dict.fromkeys(["uuid", "status", *decided_select])) if decided_select else ()
        )
        # Script names served by in-process functions (see jobtask.worker.functions).
        self.functions = functions or config.functions or Functions()
        self.task = self.functions.task
        # The lowest free slot first (a heap).
        self.free_slots = list(range(config.slots))
        # The runs in the slots, each with its asyncio task (the run's `task`).
        self.runs: dict[int, Run] = {}
        self._slot_freed = asyncio.Event()
        self._link: SessionLink | None = None
        self._session: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._stopped = False  # (_stopping is set: asked for each assignment, a bool will do)
        self._stop: asyncio.Event | None = None  # run()'s, set by the caller
        self._client: AsyncClient | None = None

    def info(self) -> task_service_pb2.WorkerInfo:
        return task_service_pb2.WorkerInfo(
            worker_id=self.config.worker_id,
            node_name=self.config.node_name,
            ram_kib=self.config.ram_kib,
            cores=self.config.cores,
            free_slots=len(self.free_slots),
            tags=self.config.tags,
            slots=self.config.slots,
            decided_select=self.decided_select,
        )

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        log.info(
            "worker %s on %s: %d slot(s), scripts in %s, tasks at %s",
            self.config.worker_id,
            self.config.node_name,
            self.config.slots,
            self.config.scripts_dir,
            self.config.client.tasks_addr,
        )
        async with AsyncClient(self.config.client) as client:
            try:
                if self.config.protocol == "session":
                    await self._session_until(stop, client)
                else:
                    await self._claim_until(stop, client)
            finally:
                await self._hand_back_all()
                if self._link is not None:
                    await self._link.close()
                    await self._end_session()
                shutil.rmtree(self.config.crunch_tmp, ignore_errors=True)
                await self._say_goodbye(client)
        log.info("worker %s stopped", self.config.worker_id)

    async def _session_until(self, stop: asyncio.Event, client: AsyncClient) -> None:
        """One WorkerSession: assignments come down as slots free up (each freed slot is a
        credit sent up); it lives on after `stop` until the tasks were handed back."""
        self._client = client
        tick = min(1.0, self.config.log_flush_seconds)
        self._link = SessionLink(client, self.info, self._assigned, tick=tick)
        self._session = asyncio.create_task(self._link.run(self._stopping))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({self._session, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if self._session.done():
                session, self._session = self._session, None
                try:
                    session.result()
                except (UnauthenticatedError, PermissionDeniedError) as exc:
                    raise _refused(exc) from None
        finally:
            self._stopping.set()
            self._stopped = True
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping

    async def _end_session(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(session), 10.0)
        except (UnauthenticatedError, PermissionDeniedError) as exc:
            raise _refused(exc) from None
        except (TimeoutError, JobtaskError) as exc:
            log.warning("worker session did not close cleanly: %s", exc)
            session.cancel()

    def _assigned(self, assignment: task_service_pb2.TaskAssignment, grant: Grant) -> None:
        assert self._client is not None and self._link is not None
        # (Told to stop: run()'s stop is set; the session hears it a few turns later.)
        stop = self._stop
        if self._stopped or (stop is not None and stop.is_set()) or not self.free_slots:
            # Pushed while we stop (or beyond our slots): straight back to the queue.
            log.info("task %s: handed back unstarted", assignment.task.uuid)
            self._link.enqueue(
                task_service_pb2.RunTaskRequest(
                    task_uuid=assignment.task.uuid,
                    lease_id=grant[0],
                    seq=1,
                    exit_code=0,
                    handed_back=True,
                )
            )
            return
        self._start(self._client, assignment, grant)

    async def _claim_until(self, stop: asyncio.Event, client: AsyncClient) -> None:
        backoff = 0.2
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if not self.free_slots:
                    await self._wait_for(stopping, self._slot_freed.wait())
                    self._slot_freed.clear()
                    continue
                claim = asyncio.create_task(
                    client.claim(
                        self.info(),
                        wait=self.config.claim_wait,
                        max_tasks=len(self.free_slots),
                    )
                )
                # Stopping abandons the long poll; a task the server handed out in that
                # instant goes back to the queue when its lease expires.
                await asyncio.wait({claim, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not claim.done():
                    claim.cancel()
                    with contextlib.suppress(asyncio.CancelledError, JobtaskError):
                        await claim
                    return
                try:
                    assignments = claim.result()
                except (UnauthenticatedError, PermissionDeniedError) as exc:
                    raise _refused(exc) from None
                except JobtaskError as exc:
                    log.warning("claim failed: %s (retrying in %.1fs)", exc, backoff)
                    await self._wait_for(stopping, asyncio.sleep(backoff))
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                backoff = 0.2
                for assignment in assignments:
                    self._start(client, assignment)
        finally:
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping

    @staticmethod
    async def _wait_for(stopping: asyncio.Task[bool], other: Awaitable[Any]) -> None:
        waiter = asyncio.ensure_future(other)
        await asyncio.wait({stopping, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter

    def _start(
        self,
        client: AsyncClient,
        assignment: task_service_pb2.TaskAssignment,
        grant: Grant | None = None,
    ) -> None:
        """Runs the assignment in a free slot (`grant`: its lease as the session read it;
        None for a claimed one)."""
        slot = heapq.heappop(self.free_slots)
        run: TaskRun | CarriedRun
        function = self.functions.get(assignment.job.script)
        if function is not None and self._link is not None and grant is not None:
            run = CarriedRun(self.config, assignment, slot, self._link, grant, function)
        else:
            run = TaskRun(client, self.config, assignment, slot, self._link, self.functions, grant)
        self.runs[slot] = run
        if log.isEnabledFor(logging.INFO):  # (reading the message's fields costs too)
            log.info(
                "task %s of job %s: claimed into slot %d (script %s)",
                assignment.task.uuid,
                assignment.job.uuid,
                slot,
                assignment.job.script,
            )
        if isinstance(run, CarriedRun):
            # A function on the session runs in a task of its own, with nothing around it;
            # the decision comes by callback, after this task ended (waking it for the
            # decision cost each task another turn of the loop).
            run.task = _named_task(
                run.stream.link.loop,
                run.carry(self._over, own_task=True, freed=self._free),
                run.task_uuid,
            )
        else:
            run.task = asyncio.create_task(self._run(run))

    async def _run(self, run: TaskRun) -> None:
        decided = None
        try:
            decided = await run.run()
        except Exception:
            log.exception("task %s: the worker failed running it", run.task_uuid)
        finally:
            self._over(run, decided)

    def _over(self, run: Run, decided: job_task_pb2.JobTask | None) -> None:
        """A run is over (`decided`: the task as the server decided it): its slot is free."""
        try:
            if decided is not None:
                if log.isEnabledFor(logging.INFO):
                    log.info("task %s: %s", run.task_uuid, _status_name(decided.status))
                if self.on_decided is not None:
                    self.on_decided(decided)
        except Exception:
            log.exception("task %s: the worker failed running it", run.task_uuid)
        finally:
            if self.runs.get(run.slot) is run:  # (not freed as its exit was queued)
                self._free(run)

    def _free(self, run: Run) -> None:
        """A run's slot is free: its process or function is over. A function's run frees
        it as its exit is queued, before the server's decision: the credit then travels in
        the exit's own message, and the server's answer brings the decision and the slot's
        next task together (one round trip a task, not two: the decision, then the credit
        and the assignment, each a message of its own that both processes waited for)."""
        slot = run.slot
        del self.runs[slot]
        heapq.heappush(self.free_slots, slot)
        # No credit once told to stop (on_decided may have told it just now): the
        # server would push tasks only to have them handed back.
        link, stop = self._link, self._stop
        if link is None:
            self._slot_freed.set()  # (only the claim loop waits for a free slot)
        elif not (stop is not None and stop.is_set()):
            link.credit(1)

    async def _say_goodbye(self, client: AsyncClient) -> None:
        """Tells the registry this worker stopped cleanly (else it would be shown lost)."""
        try:
            await asyncio.wait_for(client.report_worker_stopped(self.config.worker_id), 5.0)
        except (JobtaskError, TimeoutError) as exc:
            log.warning("could not report the worker stopped: %s", exc)

    async def _hand_back_all(self) -> None:
        runs = list(self.runs.values())
        for run in runs:
            run.interrupt()
        if runs:
            # (A run leaves `runs` as its task ends, or after: a function's on its decision.)
            await asyncio.gather(*(run.task for run in runs), return_exceptions=True)


def _named_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None], name: str
) -> asyncio.Task[None]:
    """`loop.create_task(coro, name=name)`, for a task a run: named by its task's uuid, and
    made by the Task constructor given the name when the loop has no task factory. (CPython
    3.11's Task formats a name, "Task-<n>", when made without one, and uvloop's create_task
    makes it so and renames it: ~1,800 instructions a run under callgrind. Not
    asyncio.create_task either: it asks for the running loop, a getpid() system call in
    CPython 3.11.)"""
    if loop.get_task_factory() is None:
        return asyncio.Task(coro, loop=loop, name=name)
    return loop.create_task(coro, name=name)


def _refused(exc: UnauthenticatedError | PermissionDeniedError) -> JobtaskError:
    """No retry makes a refused token good: stop and say what to do."""
    return type(exc)(
        f"the worker's token was refused ({exc}): give it a worker token "
        "(`jobtask token create --worker`) in $JOBTASK_TOKEN or --token",
        status=exc.status,
    )


def _status_name(status: int) -> str:
    return job_task_pb2.TaskStatus.Name(status).removeprefix("TASK_STATUS_").lower()
