"""Watch streams: resumable with after_seq, exactly once and in order; pruning is real."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from jobtask.server.watch import event_pb
from jobtask.store import feed
from jobtask.store.schema import events
from jobtask.v1 import watch_pb2
from sqlalchemy import select, update

from tests.conftest import Cluster, running_cluster
from tests.core.helpers import create_job
from tests.polling import eventually
from tests.worker_protocol.helpers import Run, claim_as, watch, watch_events

SNAPSHOT = watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT
HEARTBEAT = watch_pb2.WATCH_EVENT_TYPE_HEARTBEAT


async def feed_seqs(cluster: Cluster, job_uuid: str) -> list[int]:
    async with cluster.services.core.db.read() as conn:
        rows = await conn.execute(
            select(events.c.seq).where(events.c.job_uuid == job_uuid).order_by(events.c.seq)
        )
        return [seq for (seq,) in rows]


async def take(call: Any, n: int) -> list[watch_pb2.WatchEvent]:
    out: list[watch_pb2.WatchEvent] = []
    async for event in call:
        if event.type not in (SNAPSHOT, HEARTBEAT):
            out.append(event)
            if len(out) == n:
                break
    return out


async def test_a_watcher_that_reconnects_gets_every_event_once_in_order(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="watched.py"))
    first = watch(cluster, job.uuid)
    snapshot = await anext(aiter(first))
    assert snapshot.type == SNAPSHOT and snapshot.snapshot_done
    start = snapshot.seq

    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    for i in range(5):
        await run.acked(await run.send(progress=(i + 1) / 10, log=f"line {i}\n"))
    seen = await take(first, 4)
    first.cancel()  # the watcher disconnects...

    for i in range(5, 9):  # ...the task carries on meanwhile...
        await run.acked(await run.send(progress=(i + 1) / 10, log=f"line {i}\n"))
    await run.exit(progress=1.0, success=True)

    # ...and it resumes where it left off; the stream closes once the job is done.
    seen += await watch_events(cluster, job.uuid, after_seq=seen[-1].seq)
    got = [e.seq for e in seen]
    assert got == [s for s in await feed_seqs(cluster, job.uuid) if s > start]
    logs = "".join(e.log for e in seen if e.type == watch_pb2.WATCH_EVENT_TYPE_TASK_LOG)
    assert logs == "".join(f"line {i}\n" for i in range(9))


async def test_resuming_a_finished_job_closes_once_caught_up(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="quick.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    await Run(cluster, a).exit(progress=1.0, success=True)
    everything = await watch_events(cluster, job.uuid, after_seq=0)
    assert everything[-1].type == watch_pb2.WATCH_EVENT_TYPE_JOB_CHANGED
    assert await watch_events(cluster, job.uuid, after_seq=everything[-1].seq) == []
    assert await watch_events(cluster, job.uuid, after_seq=everything[-3].seq) == everything[-2:]


async def test_after_seq_ahead_of_the_feed_is_out_of_range(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="s.py"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await watch_events(cluster, job.uuid, after_seq=10**9)
    assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE


@pytest.fixture
async def pruning(database_url: str) -> AsyncIterator[Cluster]:
    """Keeps only the last 5 events, whatever their age, and prunes ten times a second."""
    async with running_cluster(
        database_url, feed_keep_seconds=0, feed_keep_events=5, prune_interval=0.1
    ) as c:
        yield c


async def test_pruned_positions_are_out_of_range_and_a_snapshot_recovers(
    pruning: Cluster,
) -> None:
    cluster = pruning
    job = await cluster.jobs.CreateJob(create_job(script="old.py"))
    for i in range(10):
        await cluster.jobs.CreateJob(create_job(script=f"filler{i}.py"))

    async def settled() -> int:
        """The watermark, once pruning has caught up with the fillers' events (the last 5
        kept): before that it still rises, and a snapshot taken meanwhile gives a position
        the next prune passes (OUT_OF_RANGE, rightly: the server cannot tell whether it
        pruned events of this job). That race made this test fail on a loaded machine."""
        async with cluster.services.core.db.read() as conn:
            pruned, last = await feed.pruned_before(conn), await feed.head(conn)
        return pruned if pruned and pruned == last - 5 else 0

    watermark = await eventually(settled)
    assert len(await feed_seqs(cluster, job.uuid)) == 0  # the job's events are gone
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await watch_events(cluster, job.uuid, after_seq=1)
    assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "read the job again" in (caught.value.details() or "")

    # Re-reading gives a position that can be resumed from, though all its events are gone.
    call = watch(cluster, job.uuid)
    snapshot = await anext(aiter(call))
    call.cancel()
    assert snapshot.type == SNAPSHOT and snapshot.seq >= watermark
    resumed = watch(cluster, job.uuid, after_seq=snapshot.seq)
    a = await claim_as(cluster, "w1")
    assert a is not None and a.job.uuid == job.uuid
    (event,) = await take(resumed, 1)
    resumed.cancel()
    assert event.type == watch_pb2.WATCH_EVENT_TYPE_TASK_CHANGED and event.task_uuid == a.task.uuid


async def test_a_resumed_watch_sends_what_full_payloads_say_and_reads_old_ones_alike(
    cluster: Cluster,
) -> None:
    """The feed stores short payloads (no defaults, no derived attributes); a resumed watch
    sends exactly the messages their full form gives, and the same again once every event
    is rewritten to the full form a database written before holds."""
    job = await cluster.jobs.CreateJob(create_job(script="short.py"))
    a = await claim_as(cluster, "w1")
    assert a is not None
    run = Run(cluster, a)
    await run.acked(await run.send(progress=0.5, log="half\n"))
    await run.exit(progress=1.0, success=True)
    resumed = await watch_events(cluster, job.uuid, after_seq=0)

    async with cluster.services.core.db.read() as conn:
        query = select(events).where(events.c.job_uuid == job.uuid).order_by(events.c.seq)
        stored = [dict(r._mapping) for r in await conn.execute(query)]
    full = [{**row, "payload": feed.full_payload(row["type"], row["payload"])} for row in stored]
    changes = [row for row in stored if row["type"] in ("job_changed", "task_changed")]
    assert changes and not any("etag" in row["payload"] for row in changes)
    assert not any("failure_reason" in row["payload"] for row in changes)
    assert resumed == [event_pb(row) for row in full]

    async def rewrite(conn: Any) -> None:
        for row in full:
            await conn.execute(
                update(events).where(events.c.seq == row["seq"]).values(payload=row["payload"])
            )

    await cluster.services.core.db.transact(rewrite)
    async with cluster.services.core.db.read() as conn:
        assert [dict(r._mapping) for r in await conn.execute(query)] == full
    assert await watch_events(cluster, job.uuid, after_seq=0) == resumed
