"""`AsyncClient`: the jobs and tasks of a jobtask cluster, over its two gRPC services.

    async with AsyncClient.connect() as client:        # JOBTASK_* variables, or arguments
        job = await client.submit("hash.py", {"input": "x"})
        async for event in client.watch(job.uuid):
            ...

Every method returns the services' own protobuf messages and raises `JobtaskError`
subclasses (jobtask.sdk.errors) for failed calls.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Unpack

import grpc
from google.protobuf import field_mask_pb2
from jobtask.sdk import messages
from jobtask.sdk.config import ClientConfig
from jobtask.sdk.errors import InvalidArgumentError, from_rpc_error
from jobtask.sdk.messages import Constraints, Filters, ListOptions, Submission
from jobtask.sdk.transport import Transport
from jobtask.sdk.watch import EVENTS_PER_MESSAGE, OnBreak, resumable
from jobtask.v1 import (
    job_pb2,
    job_service_pb2,
    job_task_pb2,
    task_service_pb2,
    watch_pb2,
    worker_pb2,
)

Job = job_pb2.Job
JobTask = job_task_pb2.JobTask
Worker = worker_pb2.Worker
# Headroom over a long poll's own wait before the call itself times out.
CLAIM_SLACK_SECONDS = 10.0
TASK_PAGE = 1000
# Tasks per BatchCreateTasks call (the server's limit).
BATCH_CREATE = 1000
# Jobs per BatchCreateJobs call (the server's limit).
BATCH_CREATE_JOBS = 1000


def _env_uuid(name: str, given: str | None, argument: str) -> str:
    """`given`, else $name (set for a task's process); refused as the server would refuse
    an empty uuid, naming the argument."""
    value = given or os.environ.get(name)
    if not value:
        raise InvalidArgumentError(f"{argument}: none given and ${name} is not set", field=argument)
    return value


class AsyncClient:
    def __init__(self, config: ClientConfig, *, timeout: float | None = None) -> None:
        self.config = config
        self.transport = Transport(config, timeout=timeout)

    @classmethod
    def connect(
        cls,
        jobs_addr: str | None = None,
        tasks_addr: str | None = None,
        token: str | None = None,
        *,
        timeout: float | None = None,
        tls_ca_file: str | None = None,
    ) -> AsyncClient:
        """A client for `async with`; unset arguments come from JOBTASK_JOBS_ADDR,
        JOBTASK_TASKS_ADDR, JOBTASK_TOKEN and JOBTASK_TLS_CA."""
        config = ClientConfig.from_env(jobs_addr, tasks_addr, token, tls_ca_file=tls_ca_file)
        return cls(config, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    # -- jobs -----------------------------------------------------------------------------

    async def submit(
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
        """Submits a job. Without allow_duplicate an identical job that has not failed is
        returned instead of a new one; repeating a submit_id returns the same job."""
        request = messages.create_job_request(
            {
                "script": script,
                "parameters": parameters,
                "version": version,
                "priority": priority,
                "constraints": constraints,
                "submit_id": submit_id,
                "allow_duplicate": allow_duplicate,
                "repository": repository,
            }
        )
        return await self.transport.unary(self.transport.jobs.CreateJob, request, Job)

    async def create_jobs(self, submissions: Sequence[Submission]) -> builtins.list[Job]:
        """Submits several jobs in one call and one transaction, all or none
        (BatchCreateJobs): each submission is `submit`'s arguments as a dict
        ({"script": ..., "parameters": ..., "submit_id": ..., ...}) and means what `submit`
        means, applied in order. Returns the jobs in the submissions' order. At most
        BATCH_CREATE_JOBS (1,000) a call -- more is InvalidArgumentError: split larger
        submissions into calls yourself (each is then all or none on its own)."""
        request = job_service_pb2.BatchCreateJobsRequest(
            requests=[messages.create_job_request(s) for s in submissions]
        )
        response = await self.transport.unary(
            self.transport.jobs.BatchCreateJobs, request, job_service_pb2.BatchCreateJobsResponse
        )
        return builtins.list(response.jobs)

    async def get(self, uuid: str) -> Job:
        request = job_service_pb2.GetJobRequest(uuid=uuid)
        return await self.transport.unary(self.transport.jobs.GetJob, request, Job)

    async def list(
        self,
        filters: Filters | None = None,
        **options: Unpack[ListOptions],
    ) -> job_service_pb2.ListJobsResponse:
        """Jobs matching Arvados filters ([[attribute, operator, operand], ...])."""
        request = job_service_pb2.ListJobsRequest()
        messages.fill_list_request(request, filters, options)
        return await self.transport.unary(
            self.transport.jobs.ListJobs, request, job_service_pb2.ListJobsResponse
        )

    async def queue(
        self,
        filters: Filters | None = None,
        *,
        limit: int | None = None,
        offset: int | None = None,
    ) -> job_service_pb2.ListJobsResponse:
        """Queued jobs, highest priority first, then oldest first."""
        request = job_service_pb2.ListJobsRequest()
        messages.fill_list_request(request, filters, {"limit": limit, "offset": offset})
        return await self.transport.unary(
            self.transport.jobs.QueueJobs, request, job_service_pb2.ListJobsResponse
        )

    async def queue_size(self) -> int:
        response = await self.transport.unary(
            self.transport.jobs.QueueSize,
            job_service_pb2.QueueSizeRequest(),
            job_service_pb2.QueueSizeResponse,
        )
        return response.queue_size

    async def cancel(self, uuid: str) -> Job:
        request = job_service_pb2.CancelJobRequest(uuid=uuid)
        return await self.transport.unary(self.transport.jobs.CancelJob, request, Job)

    async def requeue(self, uuid: str) -> Job:
        request = job_service_pb2.RequeueJobRequest(uuid=uuid)
        return await self.transport.unary(self.transport.jobs.RequeueJob, request, Job)

    async def pause(self, uuid: str) -> Job:
        request = job_service_pb2.PauseJobRequest(uuid=uuid)
        return await self.transport.unary(self.transport.jobs.PauseJob, request, Job)

    async def resume(self, uuid: str) -> Job:
        request = job_service_pb2.ResumeJobRequest(uuid=uuid)
        return await self.transport.unary(self.transport.jobs.ResumeJob, request, Job)

    async def lock(self, uuid: str) -> Job:
        request = job_service_pb2.LockJobRequest(uuid=uuid)
        return await self.transport.unary(self.transport.jobs.LockJob, request, Job)

    async def delete(self, uuid: str) -> Job:
        request = job_service_pb2.DeleteJobRequest(uuid=uuid)
        return await self.transport.unary(self.transport.jobs.DeleteJob, request, Job)

    def watch(
        self,
        job_uuid: str,
        *,
        task_uuid: str | None = None,
        after_seq: int | None = None,
        reconnect_for: float = 30.0,
        heartbeats: bool = False,
        on_break: OnBreak | None = None,
    ) -> AsyncGenerator[watch_pb2.WatchEvent, None]:
        """A snapshot of the job and its tasks, then every change, until the job is
        terminal. Survives server restarts (resumes with after_seq); see jobtask.sdk.watch."""
        metadata = self.transport.metadata

        def open_stream(after: int | None) -> AsyncIterator[watch_pb2.WatchEvent]:
            if task_uuid:
                tasks_request = task_service_pb2.WatchTasksRequest(
                    job_uuid=job_uuid,
                    task_uuid=task_uuid,
                    max_events_per_message=EVENTS_PER_MESSAGE,
                )
                if after is not None:
                    tasks_request.after_seq = after
                call: AsyncIterator[watch_pb2.WatchEvent] = self.transport.tasks.WatchTasks(
                    tasks_request, metadata=metadata
                )
                return call
            job_request = job_service_pb2.WatchJobRequest(
                uuid=job_uuid, max_events_per_message=EVENTS_PER_MESSAGE
            )
            if after is not None:
                job_request.after_seq = after
            stream: AsyncIterator[watch_pb2.WatchEvent] = self.transport.jobs.WatchJob(
                job_request, metadata=metadata
            )
            return stream

        return resumable(
            open_stream,
            after_seq=after_seq,
            reconnect_for=reconnect_for,
            heartbeats=heartbeats,
            on_break=on_break,
        )

    # -- tasks ----------------------------------------------------------------------------

    async def get_task(self, uuid: str) -> JobTask:
        request = task_service_pb2.GetTaskRequest(uuid=uuid)
        return await self.transport.unary(self.transport.tasks.GetTask, request, JobTask)

    async def list_tasks(
        self,
        filters: Filters | None = None,
        **options: Unpack[ListOptions],
    ) -> task_service_pb2.ListTasksResponse:
        request = task_service_pb2.ListTasksRequest()
        messages.fill_list_request(request, filters, options)
        return await self.transport.unary(
            self.transport.tasks.ListTasks, request, task_service_pb2.ListTasksResponse
        )

    async def tasks(self, job_uuid: str) -> builtins.list[JobTask]:
        """All tasks of a job, in order of arrival (qsequence)."""
        found: builtins.list[JobTask] = []
        while True:
            page = await self.list_tasks(
                [["job_uuid", "=", job_uuid]],
                order=["qsequence asc"],
                limit=TASK_PAGE,
                offset=len(found),
                count="none",
            )
            found.extend(page.items)
            if len(page.items) < TASK_PAGE:
                return found

    async def create_task(
        self,
        job_uuid: str,
        *,
        sequence: int = 0,
        parameters: Mapping[str, Any] | None = None,
        created_by: str | None = None,
        constraints: Constraints | None = None,
    ) -> JobTask:
        task = JobTask(job_uuid=job_uuid, sequence=sequence)
        task.parameters.CopyFrom(messages.struct(parameters))
        if created_by:
            task.created_by_job_task_uuid = created_by
        if constraints:
            task.runtime_constraints.CopyFrom(messages.constraints(constraints))
        request = task_service_pb2.CreateTaskRequest(job_task=task)
        return await self.transport.unary(self.transport.tasks.CreateTask, request, JobTask)

    async def create_tasks(
        self,
        job_uuid: str,
        parameters: Sequence[Mapping[str, Any] | None],
        *,
        sequence: int = 0,
        created_by: str | None = None,
        constraints: Constraints | None = None,
        select: Sequence[str] = (),
    ) -> builtins.list[JobTask]:
        """One task per entry of `parameters` (BatchCreateTasks), in their order: a call per
        BATCH_CREATE tasks, each call all or none. `select`: the attributes to have back
        (each task then holds only those and `kind`), e.g. ("uuid",) -- a fan-out that does
        not read its tasks back spares the server and itself a whole task each."""
        created: list[JobTask] = []
        for start in range(0, len(parameters), BATCH_CREATE):
            request = task_service_pb2.BatchCreateTasksRequest(select=select)
            for params in parameters[start : start + BATCH_CREATE]:
                task = request.requests.add().job_task
                task.job_uuid = job_uuid
                task.sequence = sequence
                task.parameters.CopyFrom(messages.struct(params))
                if created_by:
                    task.created_by_job_task_uuid = created_by
                if constraints:
                    task.runtime_constraints.CopyFrom(messages.constraints(constraints))
            response = await self.transport.unary(
                self.transport.tasks.BatchCreateTasks,
                request,
                task_service_pb2.BatchCreateTasksResponse,
            )
            created.extend(response.job_tasks)
        return created

    async def create_child_tasks(
        self,
        parameters: Sequence[Mapping[str, Any] | None],
        *,
        sequence: int = 1,
        parent_uuid: str | None = None,
        job_uuid: str | None = None,
        constraints: Constraints | None = None,
        select: Sequence[str] = (),
    ) -> builtins.list[JobTask]:
        """create_child_task for many inputs at once (see create_tasks)."""
        return await self.create_tasks(
            _env_uuid("JOB_UUID", job_uuid, "job_uuid"),
            parameters,
            sequence=sequence,
            created_by=_env_uuid("TASK_UUID", parent_uuid, "parent_uuid"),
            constraints=constraints,
            select=select,
        )

    async def create_child_task(
        self,
        parameters: Mapping[str, Any] | None = None,
        *,
        sequence: int = 1,
        parent_uuid: str | None = None,
        job_uuid: str | None = None,
        constraints: Constraints | None = None,
    ) -> JobTask:
        """A task created by another (Arvados's one-task-per-input pattern): it runs only
        after its creator completed. In a task's process the parent and the job default to
        $TASK_UUID and $JOB_UUID."""
        return await self.create_task(
            _env_uuid("JOB_UUID", job_uuid, "job_uuid"),
            sequence=sequence,
            parameters=parameters,
            created_by=_env_uuid("TASK_UUID", parent_uuid, "parent_uuid"),
            constraints=constraints,
        )

    async def update_task(
        self,
        uuid: str | None = None,
        *,
        progress: float | None = None,
        output: str | None = None,
        success: bool | None = None,
    ) -> JobTask:
        """The seeds' PATCH of a task by its own process (uuid defaults to $TASK_UUID):
        only the values given change."""
        task = JobTask()
        paths: builtins.list[str] = []
        if progress is not None:
            task.progress = progress
            paths.append("progress")
        if output is not None:
            task.output = output
            paths.append("output")
        if success is not None:
            task.success = success
            paths.append("success")
        request = task_service_pb2.UpdateTaskRequest(
            uuid=_env_uuid("TASK_UUID", uuid, "uuid"),
            job_task=task,
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        )
        return await self.transport.unary(self.transport.tasks.UpdateTask, request, JobTask)

    async def report_progress(self, progress: float, uuid: str | None = None) -> JobTask:
        return await self.update_task(uuid, progress=progress)

    async def set_output(
        self, output: str, uuid: str | None = None, *, success: bool | None = True
    ) -> JobTask:
        """Records the task's output and decides it (success=None: only the output).
        success=True also sets progress to 1.0, which the completion rule requires."""
        progress = 1.0 if success else None
        return await self.update_task(uuid, progress=progress, output=output, success=success)

    # -- attempts ---------------------------------------------------------------------------

    async def task_attempts(self, uuid: str) -> builtins.list[task_service_pb2.TaskAttempt]:
        """Every attempt at the task, oldest first: worker, node, start, end, outcome and
        the process's exit code or signal."""
        return await self._attempts(
            self.transport.tasks.ListTaskAttempts,
            task_service_pb2.ListTaskAttemptsRequest,
            task_service_pb2.ListTaskAttemptsResponse,
            uuid,
        )

    async def job_attempts(self, uuid: str) -> builtins.list[task_service_pb2.TaskAttempt]:
        """Every attempt at every task of the job, oldest first."""
        return await self._attempts(
            self.transport.tasks.ListJobAttempts,
            task_service_pb2.ListJobAttemptsRequest,
            task_service_pb2.ListJobAttemptsResponse,
            uuid,
        )

    async def _attempts(
        self, method: Any, request_type: Any, response_type: Any, uuid: str
    ) -> builtins.list[task_service_pb2.TaskAttempt]:
        found: builtins.list[task_service_pb2.TaskAttempt] = []
        while True:
            request = request_type(uuid=uuid, limit=TASK_PAGE, offset=len(found))
            page = await self.transport.unary(method, request, response_type)
            found.extend(page.items)
            if len(page.items) < TASK_PAGE:
                return found

    # -- workers ----------------------------------------------------------------------------

    async def list_workers(
        self, *, limit: int | None = None, offset: int | None = None
    ) -> task_service_pb2.ListWorkersResponse:
        """The worker registry, newest sign of life first (state: live, lost or stopped)."""
        request = task_service_pb2.ListWorkersRequest(limit=limit, offset=offset)
        return await self.transport.unary(
            self.transport.tasks.ListWorkers, request, task_service_pb2.ListWorkersResponse
        )

    async def workers(self) -> builtins.list[Worker]:
        """Every worker in the registry."""
        found: builtins.list[Worker] = []
        while True:
            page = await self.list_workers(limit=TASK_PAGE, offset=len(found))
            found.extend(page.items)
            if len(page.items) < TASK_PAGE:
                return found

    async def get_worker(self, worker_id: str) -> Worker:
        request = task_service_pb2.GetWorkerRequest(worker_id=worker_id)
        return await self.transport.unary(self.transport.tasks.GetWorker, request, Worker)

    async def report_worker_stopped(self, worker_id: str) -> Worker:
        """A worker's goodbye on a clean shutdown: it is shown stopped, not lost."""
        request = task_service_pb2.ReportWorkerStoppedRequest(worker_id=worker_id)
        return await self.transport.unary(self.transport.tasks.ReportWorkerStopped, request, Worker)

    async def watch_workers(self) -> AsyncGenerator[worker_pb2.WorkerEvent, None]:
        """The registry (one SNAPSHOT event), then each worker that joined, changed, was
        lost or stopped, or was REMOVED from the registry (pruned; the event carries the
        worker as last sent), and HEARTBEATs; runs until the caller stops reading."""
        call = self.transport.tasks.WatchWorkers(
            task_service_pb2.WatchWorkersRequest(), metadata=self.transport.metadata
        )
        try:
            async for event in call:
                yield event
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            call.cancel()

    async def claim(
        self,
        worker: task_service_pb2.WorkerInfo,
        *,
        wait: float = 0.0,
        max_tasks: int = 1,
    ) -> builtins.list[task_service_pb2.TaskAssignment]:
        """Long-polls for up to max_tasks runnable tasks (each with a lease and task token)."""
        request = task_service_pb2.ClaimTaskRequest(
            worker=worker, wait=messages.duration(wait), max_tasks=max_tasks
        )
        response = await self.transport.unary(
            self.transport.tasks.ClaimTask,
            request,
            task_service_pb2.ClaimTaskResponse,
            deadline=wait + CLAIM_SLACK_SECONDS,
        )
        return builtins.list(response.assignments)

    def run_task(self) -> Any:
        """Opens a RunTask stream (a grpc.aio StreamStreamCall: write/read/done_writing).
        The worker agent drives it; errors surface as grpc.aio.AioRpcError."""
        return self.transport.tasks.RunTask(metadata=self.transport.metadata)

    def worker_session(self) -> Any:
        """Opens a WorkerSession stream (a grpc.aio StreamStreamCall: write/read/done_writing).
        The worker agent drives it; errors surface as grpc.aio.AioRpcError."""
        return self.transport.tasks.WorkerSession(metadata=self.transport.metadata)

    async def report_exit(
        self,
        uuid: str,
        lease_id: str,
        *,
        exit_code: int | None = None,
        signal: int | None = None,
        log: str = "",
    ) -> JobTask:
        request = task_service_pb2.ReportTaskExitRequest(uuid=uuid, lease_id=lease_id, log=log)
        if exit_code is not None:
            request.exit_code = exit_code
        if signal is not None:
            request.signal = signal
        return await self.transport.unary(self.transport.tasks.ReportTaskExit, request, JobTask)
