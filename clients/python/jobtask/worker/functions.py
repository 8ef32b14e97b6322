"""Tasks as in-process Python functions, registered by script name.

    from jobtask.worker.functions import Functions

    functions = Functions()

    @functions.task("resize")              # jobs whose script is "resize"
    async def resize(ctx):
        ctx.progress(0.5)
        await ctx.create_child_task({"part": 2})
        return "./out 0:3:a.txt\\n"        # the output

    @functions.task("checksum")            # a plain function runs in a thread pool
    def checksum(ctx):
        ...

Run them with `jobtask worker --functions mymodule:functions` (or
`Worker(config, functions=functions)`, or `@worker.task(...)` on a Worker). A job whose
script names a registered function runs it in the worker's process; any other script runs
as a process, as before.

The rules are a script's (the seeds' completion rule): returning normally reports progress
1.0 and success true, unless the function reported success itself (`ctx.success(False)`
fails the task for good); a returned string is the output, unless `ctx.output` set one. An
exception is a process that exited 1 without success: a temporary failure, retried (its
traceback goes to the task log). Cancel sets `ctx.cancelled`; an async function is then
cancelled (asyncio.CancelledError) after the worker's kill grace, a thread cannot be
interrupted and should look at `ctx.cancelled`. The worker's lease watchdog and a lost lease
stop a function the same way (at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from jobtask.sdk.client import AsyncClient
from jobtask.sdk.config import ClientConfig
from jobtask.sdk.messages import to_dict
from jobtask.v1 import job_task_pb2, task_service_pb2
from jobtask.worker.process import Exit
from jobtask.worker.reports import Report

TaskFunction = Callable[["TaskContext"], Any]
# What most runs end with, made once (both are frozen).
DONE = Report(progress=1.0, success=True)
EXITED_0 = Exit(exit_code=0)
F = TypeVar("F", bound=TaskFunction)


class Functions:
    """Script name -> function."""

    def __init__(self) -> None:
        self._by_name: dict[str, TaskFunction] = {}

    def task(self, name: str) -> Callable[[F], F]:
        """Registers the decorated function as the task of jobs whose script is `name`."""
        if not name:
            raise ValueError("a task function needs a script name")

        def register(fn: F) -> F:
            if name in self._by_name:
                raise ValueError(f"a task function is already registered as {name!r}")
            self._by_name[name] = fn
            return fn

        return register

    def get(self, name: str) -> TaskFunction | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)


def load(spec: str) -> Functions:
    """`module:attribute` -> the Functions object it names (`jobtask worker --functions`).
    The module is looked for in the current directory first, then on the path, as
    `python -m` and other workers' `-A`/app options do: a console script's path starts
    with its own directory, not the one it was started from (`examples.functions:functions`
    from a checkout). A module that cannot be imported is a ValueError naming it."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--functions needs module:attribute, not {spec!r}")
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--functions {spec}: cannot import {module_name}: {exc}") from None
    found = getattr(module, attr, None)
    if not isinstance(found, Functions):
        raise ValueError(f"{spec} is not a jobtask.worker.functions.Functions")
    return found


class TaskContext:
    """What a task function sees of its task, and how it reports (see the module)."""

    # What most tasks never change, as class defaults: a context is made for every task
    # (an assignment here is one attribute store fewer each).
    _client: AsyncClient | None = None
    # Set on the event loop, read from any thread (a plain function's): a bool will do.
    _cancel = False
    _cancelled: asyncio.Event | None = None  # made when something waits for it
    reported_success: bool | None = None
    reported_output: str | None = None

    def __init__(
        self,
        assignment: task_service_pb2.TaskAssignment,
        client: ClientConfig,
        report: Callable[[Report], None],
        log: Callable[[str], None],
    ) -> None:
        self.assignment = assignment
        self._client_config = client
        self._report = report
        self._log = log

    # What the assignment says, read from it when first asked (a short task may never ask,
    # and each read of a nested message costs).
    @functools.cached_property
    def task_uuid(self) -> str:
        return self.assignment.task.uuid

    @functools.cached_property
    def job_uuid(self) -> str:
        return self.assignment.job.uuid

    @functools.cached_property
    def attempt(self) -> int:
        return self.assignment.task.attempt

    # The parameters as dicts, converted when first read (most no-op tasks never do).
    @functools.cached_property
    def parameters(self) -> dict[str, Any]:
        return to_dict(self.assignment.task.parameters)

    @functools.cached_property
    def job_parameters(self) -> dict[str, Any]:
        return to_dict(self.assignment.job.script_parameters)

    @property
    def cancelled(self) -> bool:
        """True once the task (or its job) was canceled, or the worker is stopping."""
        return self._cancel

    async def until_cancelled(self) -> None:
        """Returns once the task was canceled (for async functions)."""
        if self._cancelled is None:
            self._cancelled = asyncio.Event()
            if self._cancel:
                self._cancelled.set()
        await self._cancelled.wait()

    def _set_cancelled(self) -> None:
        self._cancel = True
        if self._cancelled is not None:
            self._cancelled.set()

    def progress(self, fraction: float) -> None:
        self._report(Report(progress=float(fraction)))

    def output(self, text: str) -> None:
        self.reported_output = text
        self._report(Report(output=text))

    def success(self, ok: bool) -> None:
        self.reported_success = ok
        self._report(Report(success=ok))

    def log(self, text: str) -> None:
        """Appends to the task's log (a newline is added if missing)."""
        self._log(text if text.endswith("\n") else text + "\n")

    async def create_child_task(
        self, parameters: Mapping[str, Any] | None = None, *, sequence: int = 1
    ) -> job_task_pb2.JobTask:
        """A task of this job created by this task, with the task's own token: it runs once
        this task completed, and is deleted if this task fails for good."""
        return await self.client().create_task(
            self.job_uuid, sequence=sequence, parameters=parameters, created_by=self.task_uuid
        )

    async def create_child_tasks(
        self,
        parameters: Sequence[Mapping[str, Any] | None],
        *,
        sequence: int = 1,
        select: Sequence[str] = (),
    ) -> list[job_task_pb2.JobTask]:
        """create_child_task for many inputs (one task each) in a call per 1,000 tasks:
        a fan-out into thousands of tasks costs a few calls, not one per task. `select`:
        the attributes to have back (AsyncClient.create_tasks), e.g. ("uuid",)."""
        return await self.client().create_tasks(
            self.job_uuid,
            parameters,
            sequence=sequence,
            created_by=self.task_uuid,
            select=select,
        )

    def client(self) -> AsyncClient:
        """A client acting with this task's own token (its job only), opened once."""
        if self._client is None:
            config = ClientConfig(
                jobs_addr=self._client_config.jobs_addr,
                tasks_addr=self._client_config.tasks_addr,
                token=self.assignment.task_token,
                tls_ca_file=self._client_config.tls_ca_file,
            )
            self._client = AsyncClient(config)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


@functools.lru_cache(maxsize=256)
def _is_async(fn: TaskFunction) -> bool:
    """inspect.iscoroutinefunction, asked once per function, not once per task."""
    return inspect.iscoroutinefunction(fn)


class FunctionRun:
    """A task function in the place of a script's process (jobtask.worker.process's
    ScriptProcess: terminate, kill, wait, pid). The function runs in the task that awaits
    wait() (no task of its own); kill cancels that task, as asyncio.timeout does, and wait()
    turns its own cancel into the exit of a killed process."""

    pid = 0
    # The state a run starts in, as class defaults (one is made for every task).
    _signal: int | None = None
    _task: asyncio.Task[Any] | None = None
    # While wait() runs the function; then `ended`: the function returned (or raised), and
    # what it reports now goes with its exit. (Attributes, not a property over one state:
    # the run looks at `ended` on every report.)
    _running = False
    ended = False
    _killed = False
    # kill() cancelled the task running the function, and wait() has not yet taken
    # that cancel back (Task.uncancel).
    _cancel_sent = False
    _timer: asyncio.TimerHandle | None = None

    def __init__(self, fn: TaskFunction, ctx: TaskContext) -> None:
        self.fn = fn
        self.ctx = ctx

    def _uncancel(self) -> bool:
        """Takes back the kill's cancel of the running task, if one was sent."""
        if not self._cancel_sent:
            return False
        self._cancel_sent = False
        assert self._task is not None
        self._task.uncancel()
        return True

    async def _call_plain(self) -> Any:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, functools.partial(self.fn, self.ctx))
        if inspect.isawaitable(result):
            return await result
        return result

    def terminate(self, grace: float) -> None:
        """Cancel: the context says so at once; an async function is cancelled after
        `grace` seconds if it has not returned by then."""
        self.ctx._set_cancelled()
        if self._signal is None:
            self._signal = signal.SIGINT
        if self._timer is None and not self.ended:
            self._timer = asyncio.get_running_loop().call_later(grace, self.kill)

    def kill(self) -> None:
        self.ctx._set_cancelled()
        if self.ended or self._killed:
            return
        self._signal = signal.SIGKILL
        self._killed = True
        if self._running:
            assert self._task is not None
            self._cancel_sent = True
            self._task.cancel()

    async def wait(self, task: asyncio.Task[Any] | None = None) -> Exit:
        """Runs the function to its end (in the calling task, `task` if the caller knows
        it): its exit."""
        try:
            if self._killed:
                return Exit(signal=signal.SIGKILL)  # killed before it started
            self._task = task or asyncio.current_task()
            self._running = True
            try:
                # (An async function is awaited here: no coroutine of ours around it.)
                fn = self.fn
                result = await (fn(self.ctx) if _is_async(fn) else self._call_plain())
            finally:
                self._running = False
                self.ended = True
        except asyncio.CancelledError:
            if self._uncancel() and self._task is not None and not self._task.cancelling():
                return Exit(signal=signal.SIGKILL)
            raise  # the caller itself was cancelled
        except Exception:
            self.ctx.log(traceback.format_exc())
            return Exit(exit_code=1)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            # The kill's cancel, if the function swallowed it or raised something else.
            if self._cancel_sent:
                self._uncancel()
            if self.ctx._client is not None:  # (most tasks never open one)
                with contextlib.suppress(Exception):
                    await self.ctx.close()
        if self.ctx._cancel and self._signal is not None:
            # Returned after a cancel: it stopped as asked, like a script ending on SIGINT
            # (or after a kill whose cancel it swallowed: killed all the same).
            return Exit(signal=self._signal)
        if isinstance(result, str) and self.ctx.reported_output is None:
            self.ctx.output(result)
        if self.ctx.reported_success is None:
            self.ctx.reported_success = True
            self.ctx._report(DONE)  # ctx.progress(1.0), ctx.success(True)
        return EXITED_0


def start(
    fn: TaskFunction,
    assignment: task_service_pb2.TaskAssignment,
    client: ClientConfig,
    report: Callable[[Report], None],
    log: Callable[[str], None],
) -> FunctionRun:
    return FunctionRun(fn, TaskContext(assignment, client, report, log))
