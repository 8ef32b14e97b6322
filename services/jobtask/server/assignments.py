"""Workers as they describe themselves, and the assignments they are handed."""

from __future__ import annotations

from jobtask.domain.errors import InvalidArgument
from jobtask.manager.claims import WorkerSpec
from jobtask.manager.tasks import Claim
from jobtask.server.convert import job_pb, stamp, task_pb
from jobtask.v1 import job_pb2, task_service_pb2

# Woken this long after a backoff's end, so the claim after it finds the task runnable.
BACKOFF_SLACK = 0.01


def assignments_pb(
    claims: list[Claim], ttl_seconds: float
) -> list[task_service_pb2.TaskAssignment]:
    """The claims as assignments; each job converted once (a claim's tasks often share
    their job: a fan-out's always do)."""
    jobs: dict[int, job_pb2.Job] = {}
    out = []
    for claim in claims:
        job = jobs.get(claim.job.id)
        if job is None:
            job = jobs[claim.job.id] = job_pb(claim.job)
        a = task_service_pb2.TaskAssignment(task=task_pb(claim.task), job=job)
        a.task_token = claim.token
        a.lease.lease_id = claim.lease_id
        stamp(a.lease.expires_at, claim.lease_expires_at)
        a.lease.ttl.FromNanoseconds(int(ttl_seconds * 1e9))
        out.append(a)
    return out


# Worker-sent names are copied into every event about its tasks: keep them small.
MAX_WORKER_STRING = 256
MAX_WORKER_TAGS = 64


def _short_string(value: str, field: str) -> str:
    if len(value) > MAX_WORKER_STRING:
        raise InvalidArgument(field, f"at most {MAX_WORKER_STRING} characters")
    return value


def worker_spec(info: task_service_pb2.WorkerInfo) -> WorkerSpec:
    _short_string(info.worker_id, "worker.worker_id")
    _short_string(info.node_name, "worker.node_name")
    if len(info.tags) > MAX_WORKER_TAGS:
        raise InvalidArgument("worker.tags", f"at most {MAX_WORKER_TAGS} tags")
    for i, tag in enumerate(info.tags):
        _short_string(tag, f"worker.tags[{i}]")
    for name in ("free_slots", "cores", "ram_kib"):
        if getattr(info, name) < 0:
            raise InvalidArgument(f"worker.{name}", "must not be negative")
    return WorkerSpec(
        worker_id=info.worker_id,
        node_name=info.node_name,
        ram_kib=info.ram_kib,
        cores=info.cores,
        free_slots=info.free_slots,
        tags=tuple(info.tags),
        slots=info.slots,
    )
