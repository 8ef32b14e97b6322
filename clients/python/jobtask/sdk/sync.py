"""`Client`: the blocking face of `AsyncClient`, for scripts and shells.

    with Client.connect() as client:
        client.report_progress(0.5)

It runs an AsyncClient on a private event loop, so it must not be used from inside a
running event loop (use AsyncClient there). Methods and arguments are AsyncClient's; its
streams (`watch`, `watch_workers`) are plain iterators. The methods in ASYNC_ONLY are
AsyncClient's alone.
"""

from __future__ import annotations

import asyncio
import builtins
import weakref
from collections.abc import AsyncGenerator, Coroutine, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, Unpack

from jobtask.sdk.client import AsyncClient, Job, JobTask, Worker
from jobtask.sdk.config import ClientConfig
from jobtask.sdk.messages import Constraints, Filters, ListOptions, Submission
from jobtask.sdk.watch import OnBreak
from jobtask.v1 import job_service_pb2, task_service_pb2, watch_pb2, worker_pb2

T = TypeVar("T")

# AsyncClient's methods that Client leaves out: each opens a bidirectional grpc.aio stream
# (write/read/done_writing, all awaited) bound to the client's event loop, which a worker
# agent drives while it runs its tasks; there is no blocking way to hold one open.
ASYNC_ONLY = frozenset({"run_task", "worker_session"})
# The longest close() waits for gRPC to finish the calls it cancelled.
CLOSE_SECONDS = 2.0


class Client:
    def __init__(self, config: ClientConfig, *, timeout: float | None = None) -> None:
        self._runner = asyncio.Runner()

        async def make() -> AsyncClient:
            # grpc.aio channels belong to the loop they are created on: create them on ours.
            return AsyncClient(config, timeout=timeout)

        self._async = self._runner.run(make())
        self._closed = False
        # The streams handed out and not yet ended (their generators).
        self._streams: weakref.WeakSet[Generator[Any, None, None]] = weakref.WeakSet()
        self.config = config

    @classmethod
    def connect(
        cls,
        jobs_addr: str | None = None,
        tasks_addr: str | None = None,
        token: str | None = None,
        *,
        timeout: float | None = None,
        tls_ca_file: str | None = None,
    ) -> Client:
        config = ClientConfig.from_env(jobs_addr, tasks_addr, token, tls_ca_file=tls_ca_file)
        return cls(config, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the client, and first its streams still open (their iterators end)."""
        try:
            for stream in list(self._streams):
                stream.close()
        finally:
            self._closed = True
            try:
                self._runner.run(self._shut())
            finally:
                self._runner.close()

    async def _shut(self) -> None:
        await self._async.close()
        # gRPC's own tasks on this loop (a cancelled call's wait for its status) end before
        # the loop closes: cancelled with it, they leave their calls' completions to arrive
        # for a closed loop, and gRPC logs "Event loop is closed".
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_SECONDS)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def _blocking(self, stream: AsyncGenerator[T, None]) -> Generator[T, None, None]:
        """An async stream of the client's loop as a plain iterator. Closing it (its close(),
        or dropping it after a `for` loop over it is left) or the client ends the stream
        there and then, on the loop: a call left to be collected after the loop has closed
        would make gRPC log "Event loop is closed"."""

        async def step() -> tuple[T] | None:
            try:
                return (await anext(stream),)
            except StopAsyncIteration:
                return None

        def iterate() -> Generator[T, None, None]:
            try:
                while (got := self._run(step())) is not None:
                    yield got[0]
            finally:
                if not self._closed:
                    self._run(stream.aclose())

        iterator = iterate()
        self._streams.add(iterator)
        return iterator

    # -- jobs -----------------------------------------------------------------------------

    def submit(
        self,
        script: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        version: str = "",
        priority: int = 0,
        constraints: Constraints | None = None,
        submit_id: str | None = None,
        allow_duplicate: bool = False,
        repository: str | None = None,
    ) -> Job:
        return self._run(
            self._async.submit(
                script,
                parameters,
                version=version,
                priority=priority,
                constraints=constraints,
                submit_id=submit_id,
                allow_duplicate=allow_duplicate,
                repository=repository,
            )
        )

    def create_jobs(self, submissions: Sequence[Submission]) -> builtins.list[Job]:
        return self._run(self._async.create_jobs(submissions))

    def get(self, uuid: str) -> Job:
        return self._run(self._async.get(uuid))

    def list(
        self,
        filters: Filters | None = None,
        **options: Unpack[ListOptions],
    ) -> job_service_pb2.ListJobsResponse:
        return self._run(self._async.list(filters, **options))

    def queue(
        self, filters: Filters | None = None, *, limit: int | None = None, offset: int | None = None
    ) -> job_service_pb2.ListJobsResponse:
        return self._run(self._async.queue(filters, limit=limit, offset=offset))

    def queue_size(self) -> int:
        return self._run(self._async.queue_size())

    def cancel(self, uuid: str) -> Job:
        return self._run(self._async.cancel(uuid))

    def requeue(self, uuid: str) -> Job:
        return self._run(self._async.requeue(uuid))

    def pause(self, uuid: str) -> Job:
        return self._run(self._async.pause(uuid))

    def resume(self, uuid: str) -> Job:
        return self._run(self._async.resume(uuid))

    def lock(self, uuid: str) -> Job:
        return self._run(self._async.lock(uuid))

    def delete(self, uuid: str) -> Job:
        return self._run(self._async.delete(uuid))

    def watch(
        self,
        job_uuid: str,
        *,
        task_uuid: str | None = None,
        after_seq: int | None = None,
        reconnect_for: float = 30.0,
        heartbeats: bool = False,
        on_break: OnBreak | None = None,
    ) -> Generator[watch_pb2.WatchEvent, None, None]:
        """AsyncClient.watch's events; `on_break` is called on the thread that reads them."""
        return self._blocking(
            self._async.watch(
                job_uuid,
                task_uuid=task_uuid,
                after_seq=after_seq,
                reconnect_for=reconnect_for,
                heartbeats=heartbeats,
                on_break=on_break,
            )
        )

    # -- tasks ----------------------------------------------------------------------------

    def get_task(self, uuid: str) -> JobTask:
        return self._run(self._async.get_task(uuid))

    def list_tasks(
        self,
        filters: Filters | None = None,
        **options: Unpack[ListOptions],
    ) -> task_service_pb2.ListTasksResponse:
        return self._run(self._async.list_tasks(filters, **options))

    def tasks(self, job_uuid: str) -> builtins.list[JobTask]:
        return self._run(self._async.tasks(job_uuid))

    def create_task(
        self,
        job_uuid: str,
        *,
        sequence: int = 0,
        parameters: Mapping[str, Any] | None = None,
        created_by: str | None = None,
        constraints: Constraints | None = None,
    ) -> JobTask:
        return self._run(
            self._async.create_task(
                job_uuid,
                sequence=sequence,
                parameters=parameters,
                created_by=created_by,
                constraints=constraints,
            )
        )

    def create_tasks(
        self,
        job_uuid: str,
        parameters: Sequence[Mapping[str, Any] | None],
        *,
        sequence: int = 0,
        created_by: str | None = None,
        constraints: Constraints | None = None,
        select: Sequence[str] = (),
    ) -> builtins.list[JobTask]:
        return self._run(
            self._async.create_tasks(
                job_uuid,
                parameters,
                sequence=sequence,
                created_by=created_by,
                constraints=constraints,
                select=select,
            )
        )

    def create_child_tasks(
        self,
        parameters: Sequence[Mapping[str, Any] | None],
        *,
        sequence: int = 1,
        parent_uuid: str | None = None,
        job_uuid: str | None = None,
        constraints: Constraints | None = None,
        select: Sequence[str] = (),
    ) -> builtins.list[JobTask]:
        return self._run(
            self._async.create_child_tasks(
                parameters,
                sequence=sequence,
                parent_uuid=parent_uuid,
                job_uuid=job_uuid,
                constraints=constraints,
                select=select,
            )
        )

    def create_child_task(
        self,
        parameters: Mapping[str, Any] | None = None,
        *,
        sequence: int = 1,
        parent_uuid: str | None = None,
        job_uuid: str | None = None,
        constraints: Constraints | None = None,
    ) -> JobTask:
        return self._run(
            self._async.create_child_task(
                parameters,
                sequence=sequence,
                parent_uuid=parent_uuid,
                job_uuid=job_uuid,
                constraints=constraints,
            )
        )

    def update_task(
        self,
        uuid: str | None = None,
        *,
        progress: float | None = None,
        output: str | None = None,
        success: bool | None = None,
    ) -> JobTask:
        return self._run(
            self._async.update_task(uuid, progress=progress, output=output, success=success)
        )

    def report_progress(self, progress: float, uuid: str | None = None) -> JobTask:
        return self._run(self._async.report_progress(progress, uuid))

    def set_output(
        self, output: str, uuid: str | None = None, *, success: bool | None = True
    ) -> JobTask:
        return self._run(self._async.set_output(output, uuid, success=success))

    # -- attempts ---------------------------------------------------------------------------

    def task_attempts(self, uuid: str) -> builtins.list[task_service_pb2.TaskAttempt]:
        return self._run(self._async.task_attempts(uuid))

    def job_attempts(self, uuid: str) -> builtins.list[task_service_pb2.TaskAttempt]:
        return self._run(self._async.job_attempts(uuid))

    # -- workers ----------------------------------------------------------------------------

    def list_workers(
        self, *, limit: int | None = None, offset: int | None = None
    ) -> task_service_pb2.ListWorkersResponse:
        return self._run(self._async.list_workers(limit=limit, offset=offset))

    def workers(self) -> builtins.list[Worker]:
        return self._run(self._async.workers())

    def get_worker(self, worker_id: str) -> Worker:
        return self._run(self._async.get_worker(worker_id))

    def report_worker_stopped(self, worker_id: str) -> Worker:
        return self._run(self._async.report_worker_stopped(worker_id))

    def watch_workers(self) -> Generator[worker_pb2.WorkerEvent, None, None]:
        """Never ends by itself: the stream stays open until the iterator is closed (its
        close(), or dropped after a `for` loop over it is left) or the client is."""
        return self._blocking(self._async.watch_workers())

    def claim(
        self, worker: task_service_pb2.WorkerInfo, *, wait: float = 0.0, max_tasks: int = 1
    ) -> builtins.list[task_service_pb2.TaskAssignment]:
        return self._run(self._async.claim(worker, wait=wait, max_tasks=max_tasks))

    def report_exit(
        self,
        uuid: str,
        lease_id: str,
        *,
        exit_code: int | None = None,
        signal: int | None = None,
        log: str = "",
    ) -> JobTask:
        return self._run(
            self._async.report_exit(uuid, lease_id, exit_code=exit_code, signal=signal, log=log)
        )
