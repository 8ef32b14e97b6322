"""Small builders for requests, so tests read as the scenario they check."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict
from jobtask.v1 import job_pb2, job_service_pb2, job_task_pb2, task_service_pb2


def filters(*conditions: list[Any]) -> struct_pb2.ListValue:
    value = struct_pb2.ListValue()
    value.extend([list(c) for c in conditions])
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
