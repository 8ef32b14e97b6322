"""Packed watch messages (max_events_per_message, WatchEvent.more): a watcher that asked for
them and lags gets several events per message, in order, none missing, resumable; a watcher
that did not ask gets one event per message, as before the field existed."""

from __future__ import annotations

import grpc
import pytest

from tests.conftest import Cluster
from tests.core.helpers import create_job
from tests.worker_protocol.helpers import Run, claim_as
from tests.worker_protocol.packing import (
    HEARTBEAT,
    PROGRESS,
    UPDATES,
    finished_job,
    flattened,
    messages_of,
    open_watch,
)
from tests.worker_protocol.test_watch import feed_seqs


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
