"""Small builders for requests, so tests read as the scenario they check."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict
from jobtask.v1 import job_pb2, job_service_pb2, job_task_pb2, task_service_pb2


def filters(*conditions: list[Any]) -> struct_pb2.ListValue:
    value = struct_pb2.ListValue()
    value.extend([list(c) for c in conditions])  # type: ignore[misc]  # nested lists are values
    return value


def job(**fields: Any) -> job_pb2.Job:
    return ParseDict(fields, job_pb2.Job())


def task(**fields: Any) -> job_task_pb2.JobTask:
    return ParseDict(fields, job_task_pb2.JobTask())


def create_job(**fields: Any) -> job_service_pb2.CreateJobRequest:
    allow = fields.pop("allow_duplicate", None)
    request = job_service_pb2.CreateJobRequest(job=job(**fields))
    if allow is not None:
        request.allow_duplicate = allow
    return request


def worker(worker_id: str = "w1", node: str = "node1", **extra: Any) -> task_service_pb2.WorkerInfo:
    return task_service_pb2.WorkerInfo(worker_id=worker_id, node_name=node, free_slots=1, **extra)


def token_md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


JS = job_pb2.JobStatus
TS = job_task_pb2.TaskStatus


def job_status(name: str) -> int:
    return job_pb2.JobStatus.Value("JOB_STATUS_" + name.upper().replace("-", "_"))


def task_status(name: str) -> int:
    return job_task_pb2.TaskStatus.Value("TASK_STATUS_" + name.upper().replace("-", "_"))


async def claim(cluster: Any, worker_id: str = "w1", node: str = "node1", wait: float = 0.0) -> Any:
    """Claims one task; returns its TaskAssignment or None."""
    request = task_service_pb2.ClaimTaskRequest(worker=worker(worker_id, node))
    if wait:
        request.wait.FromMilliseconds(int(wait * 1000))
    response = await cluster.tasks.ClaimTask(request)
    return response.assignments[0] if response.assignments else None


async def report(cluster: Any, assignment: Any, **fields: Any) -> job_task_pb2.JobTask:
    """The task's process PATCHes its task (with its own token)."""
    request = task_service_pb2.UpdateTaskRequest(uuid=assignment.task.uuid, job_task=task(**fields))
    request.update_mask.paths.extend(fields)
    answer: job_task_pb2.JobTask = await cluster.tasks.UpdateTask(
        request, metadata=token_md(assignment.task_token)
    )
    return answer


async def exit_(cluster: Any, assignment: Any, code: int = 0) -> job_task_pb2.JobTask:
    answer: job_task_pb2.JobTask = await cluster.tasks.ReportTaskExit(
        task_service_pb2.ReportTaskExitRequest(
            uuid=assignment.task.uuid, lease_id=assignment.lease.lease_id, exit_code=code
        )
    )
    return answer


async def succeed(cluster: Any, assignment: Any, output: str = "") -> job_task_pb2.JobTask:
    await report(cluster, assignment, progress=1.0, success=True, output=output)
    return await exit_(cluster, assignment)


async def get_job(cluster: Any, uuid: str) -> job_pb2.Job:
    answer: job_pb2.Job = await cluster.jobs.GetJob(job_service_pb2.GetJobRequest(uuid=uuid))
    return answer


async def get_task(cluster: Any, uuid: str) -> job_task_pb2.JobTask:
    answer: job_task_pb2.JobTask = await cluster.tasks.GetTask(
        task_service_pb2.GetTaskRequest(uuid=uuid)
    )
    return answer


async def job_tasks(cluster: Any, job_uuid: str) -> list[job_task_pb2.JobTask]:
    response = await cluster.tasks.ListTasks(
        task_service_pb2.ListTasksRequest(
            filters=filters(["job_uuid", "=", job_uuid]), order=["qsequence"]
        )
    )
    return list(response.items)


async def add_task(
    cluster: Any, job_uuid: str, metadata: Any = None, **fields: Any
) -> job_task_pb2.JobTask:
    answer: job_task_pb2.JobTask = await cluster.tasks.CreateTask(
        task_service_pb2.CreateTaskRequest(job_task=task(job_uuid=job_uuid, **fields)),
        metadata=metadata,
    )
    return answer


async def committer_canceled_before_it_ran(owner: Any, call: Awaitable[Any]) -> asyncio.Future[Any]:
    """Starts `call` (a caller handing its work to `owner`'s shared committer: GroupCommit,
    GroupedTransactions) and cancels that committer before its first step, as a stopping
    server may; returns the call, running."""
    waiting = asyncio.ensure_future(call)
    await asyncio.sleep(0)  # the call hands its work in and starts a committer, not yet run
    committer = owner.running
    assert committer is not None and not committer.done()
    committer.cancel()
    return waiting
