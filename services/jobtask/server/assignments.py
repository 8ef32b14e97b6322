"""Workers as they describe themselves, and the assignments they are handed."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from jobtask.domain.errors import InvalidArgument
from jobtask.manager.claims import WorkerSpec
from jobtask.manager.tasks import Claim
from jobtask.server.convert import fill_job, job_fields, time_fields
from jobtask.server.task_messages import TaskMessages
from jobtask.v1 import job_pb2, task_service_pb2

# Woken this long after a backoff's end, so the claim after it finds the task runnable.
BACKOFF_SLACK = 0.01


def assignments_pb(
    claims: list[Claim],
    ttl_seconds: float,
    into: RepeatedCompositeFieldContainer[task_service_pb2.TaskAssignment],
) -> None:
    """The claims as assignments, added to `into` (the answer's field: each built where it
    is sent, by one call, and filled in place -- a message built apart and then passed to
    the answer's constructor is copied whole, job and task, which cost more than building
    it); a job met again (a claim's tasks often share their job: a fan-out's always do) is
    copied from its first assignment; a task's message is the one before it, copied and
    changed where its row differs (TaskMessages)."""
    jobs: dict[int, job_pb2.Job] = {}
    ttl = Duration()
    ttl.FromNanoseconds(int(ttl_seconds * 1e9))
    ttl_fields = {"seconds": ttl.seconds, "nanos": ttl.nanos}
    tasks = TaskMessages()
    for claim in claims:
        job = jobs.get(claim.job.id)
        lease = {
            "lease_id": claim.lease_id,
            "expires_at": time_fields(claim.lease_expires_at),
            "ttl": ttl_fields,
        }
        task = tasks.fields(claim.task)
        if job is None:
            a = into.add(task=task, job=job_fields(claim.job), task_token=claim.token, lease=lease)
            fill_job(a.job, claim.job)
            jobs[claim.job.id] = a.job
        else:
            a = into.add(task=task, job=job, task_token=claim.token, lease=lease)
        tasks.fill(a.task, claim.task)


# Worker-sent names are copied into every event about its tasks: keep them small.
MAX_WORKER_STRING = 256
MAX_WORKER_TAGS = 64
# WorkerInfo.heartbeat_interval's bounds, in seconds.
MIN_HEARTBEAT_INTERVAL = 0.1
MAX_HEARTBEAT_INTERVAL = 3600.0


def _short_string(value: str, field: str) -> str:
    if len(value) > MAX_WORKER_STRING:
        raise InvalidArgument(field, f"at most {MAX_WORKER_STRING} characters")
    return value


def worker_spec(info: task_service_pb2.WorkerInfo, field: str = "worker") -> WorkerSpec:
    """The worker as it describes itself, checked; errors name `field`'s subfields (the
    message's own name for it: ClaimTask's `worker`, WorkerSession's `open`)."""
    _short_string(info.worker_id, f"{field}.worker_id")
    _short_string(info.node_name, f"{field}.node_name")
    if len(info.tags) > MAX_WORKER_TAGS:
        raise InvalidArgument(f"{field}.tags", f"at most {MAX_WORKER_TAGS} tags")
    for i, tag in enumerate(info.tags):
        _short_string(tag, f"{field}.tags[{i}]")
    for name in ("free_slots", "cores", "ram_kib"):
        if getattr(info, name) < 0:
            raise InvalidArgument(f"{field}.{name}", "must not be negative")
    interval = 0.0
    if info.HasField("heartbeat_interval"):
        given = info.heartbeat_interval
        interval = given.seconds + given.nanos / 1e9
        if not MIN_HEARTBEAT_INTERVAL <= interval <= MAX_HEARTBEAT_INTERVAL:
            raise InvalidArgument(
                f"{field}.heartbeat_interval", "must be between 100 ms and 1 hour"
            )
    return WorkerSpec(
        worker_id=info.worker_id,
        node_name=info.node_name,
        ram_kib=info.ram_kib,
        cores=info.cores,
        free_slots=info.free_slots,
        tags=tuple(info.tags),
        slots=info.slots,
        heartbeat_interval=interval,
    )
