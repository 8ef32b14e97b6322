"""Packed watch streams (max_events_per_message): a job whose watcher lags, raw streams of
it, and the server's counters of what watch streams sent."""

from __future__ import annotations

from typing import Any

from jobtask.v1 import job_service_pb2, watch_pb2
from jobtask.v1 import task_service_pb2 as TSP
from prometheus_client import REGISTRY

from tests.conftest import Cluster
from tests.core.helpers import create_job, token_md
from tests.worker_protocol.helpers import Run, claim_as
from tests.worker_protocol.test_watch import feed_seqs

HEARTBEAT = watch_pb2.WATCH_EVENT_TYPE_HEARTBEAT
PROGRESS = watch_pb2.WATCH_EVENT_TYPE_TASK_PROGRESS
# Progress reports of the lagging job, each acknowledged before the next (the server
# coalesces reports within run_task.COALESCE_SECONDS, 0.1 s, so each ack waits that long):
# 12 make packs as surely as the 40 did, at a third of the wait (~1.2 s, not 4 s, a test).
UPDATES = 12


def open_watch(
    cluster: Cluster, job_uuid: str, after_seq: int, per_message: int | None, *, job: bool
) -> Any:
    """A WatchJob (job=True) or WatchTasks call resuming after `after_seq`."""
    assert cluster.root_token is not None
    md = token_md(cluster.root_token)
    if job:
        request: Any = job_service_pb2.WatchJobRequest(uuid=job_uuid, after_seq=after_seq)
        call = cluster.jobs.WatchJob
    else:
        request = TSP.WatchTasksRequest(job_uuid=job_uuid, after_seq=after_seq)
        call = cluster.tasks.WatchTasks
    if per_message is not None:
        request.max_events_per_message = per_message
    return call(request, metadata=md)


async def messages_of(
    cluster: Cluster, job_uuid: str, after_seq: int, per_message: int | None, *, job: bool = False
) -> list[watch_pb2.WatchEvent]:
    """Every message of the stream, heartbeats aside, until it closes (the job is done)."""
    call = open_watch(cluster, job_uuid, after_seq, per_message, job=job)
    try:
        return [m async for m in call if m.type != HEARTBEAT]
    finally:
        call.cancel()


def flattened(messages: list[watch_pb2.WatchEvent]) -> list[watch_pb2.WatchEvent]:
    events = []
    for message in messages:
        first = watch_pb2.WatchEvent()
        first.CopyFrom(message)
        first.ClearField("more")
        events.append(first)
        for packed in message.more:
            assert not packed.more  # one level only
            events.append(packed)
    return events


async def finished_job(cluster: Cluster) -> tuple[str, int]:
    """A job whose task reported progress UPDATES times and succeeded: a watcher that
    resumes from the returned position (its snapshot's) lags behind all of that."""
    job = await cluster.jobs.CreateJob(create_job(script="packed.py"))
    start = max(await feed_seqs(cluster, job.uuid))
    a = await claim_as(cluster, "w1")
    assert a is not None and a.job.uuid == job.uuid
    run = Run(cluster, a)
    for i in range(UPDATES):
        await run.acked(await run.send(progress=(i + 1) / (UPDATES + 1)))
    await run.exit(progress=1.0, success=True)
    return job.uuid, start


def watch_counter(kind: str) -> float:
    """jobtask_watch_events_total or jobtask_watch_messages_total of this process (where the
    tests' servers run)."""
    return REGISTRY.get_sample_value(f"jobtask_watch_{kind}_total") or 0.0
