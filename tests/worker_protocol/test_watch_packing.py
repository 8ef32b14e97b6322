"""Packed watch messages (max_events_per_message, WatchEvent.more): a watcher that asked for
them and lags gets several events per message, in order, none missing, resumable; a watcher
that did not ask gets one event per message, as before the field existed."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from jobtask.v1 import job_service_pb2, watch_pb2
from jobtask.v1 import task_service_pb2 as TSP

from tests.conftest import Cluster
from tests.core.helpers import create_job, token_md
from tests.worker_protocol.helpers import Run, claim_as
from tests.worker_protocol.test_watch import feed_seqs

SNAPSHOT = watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT
HEARTBEAT = watch_pb2.WATCH_EVENT_TYPE_HEARTBEAT
PROGRESS = watch_pb2.WATCH_EVENT_TYPE_TASK_PROGRESS
UPDATES = 40


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


@pytest.mark.parametrize("job_rpc", [True, False], ids=["WatchJob", "WatchTasks"])
async def test_a_lagging_watcher_that_opted_in_gets_several_events_per_message(
    cluster: Cluster, job_rpc: bool
) -> None:
    job_uuid, start = await finished_job(cluster)
    expected = [s for s in await feed_seqs(cluster, job_uuid) if s > start]
    assert len(expected) > UPDATES

    packed = await messages_of(cluster, job_uuid, start, 256, job=job_rpc)
    events = flattened(packed)
    assert [e.seq for e in events] == expected  # in order, none missing, none twice
    assert len(packed) < len(events)
    assert sum(e.type == PROGRESS for e in events) == UPDATES

    # The same events as a watcher that did not ask, which gets one per message.
    plain = await messages_of(cluster, job_uuid, start, None, job=job_rpc)
    assert not any(m.more for m in plain)
    assert plain == events


async def test_packs_hold_at_most_what_was_asked(cluster: Cluster) -> None:
    job_uuid, start = await finished_job(cluster)
    expected = [s for s in await feed_seqs(cluster, job_uuid) if s > start]
    packed = await messages_of(cluster, job_uuid, start, 3)
    assert all(len(m.more) <= 2 for m in packed)
    assert len(packed) < len(expected)
    assert [e.seq for e in flattened(packed)] == expected


@pytest.mark.parametrize("per_message", [0, 1])
async def test_zero_or_one_event_per_message_is_todays_stream(
    cluster: Cluster, per_message: int
) -> None:
    job_uuid, start = await finished_job(cluster)
    messages = await messages_of(cluster, job_uuid, start, per_message)
    assert not any(m.more for m in messages)
    assert [m.seq for m in messages] == [s for s in await feed_seqs(cluster, job_uuid) if s > start]


async def test_a_packed_stream_resumes_after_any_event_of_a_pack(cluster: Cluster) -> None:
    job_uuid, start = await finished_job(cluster)
    first = await messages_of(cluster, job_uuid, start, 256)
    events = flattened(first)
    # A position inside a pack: the events after it, and only those, in order.
    pack = next(m for m in first if len(m.more) >= 2)
    middle = pack.more[0].seq
    resumed = flattened(await messages_of(cluster, job_uuid, middle, 256))
    assert resumed == [e for e in events if e.seq > middle]
    assert await messages_of(cluster, job_uuid, events[-1].seq, 256) == []


async def test_a_live_opted_in_watcher_misses_nothing(cluster: Cluster) -> None:
    """Following as events commit (packs of whatever each read found)."""
    job = await cluster.jobs.CreateJob(create_job(script="live.py"))
    start = max(await feed_seqs(cluster, job.uuid))
    call = open_watch(cluster, job.uuid, start, 256, job=True)
    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    for i in range(UPDATES):
        await run.send(progress=(i + 1) / (UPDATES + 1))
    await run.exit(progress=1.0, success=True)
    try:
        messages = [m async for m in call if m.type != HEARTBEAT]
    finally:
        call.cancel()
    expected = [s for s in await feed_seqs(cluster, job.uuid) if s > start]
    assert [e.seq for e in flattened(messages)] == expected


async def test_a_negative_count_is_invalid(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="neg.py"))
    for job_rpc in (True, False):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await messages_of(cluster, job.uuid, 0, -1, job=job_rpc)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_events_per_message" in (caught.value.details() or "")
