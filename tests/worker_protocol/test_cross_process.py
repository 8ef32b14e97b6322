"""Two TaskService processes on one database: each hears the other's commits (SQLite: by
polling the feed; PostgreSQL: by LISTEN/NOTIFY), so watchers and worker streams on one see
what happens through the other."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from jobtask.v1 import job_service_pb2 as js
from jobtask.v1 import task_service_pb2, task_service_pb2_grpc, watch_pb2
from sqlalchemy import event

from tests.conftest import ROOT, Cluster, token_channel
from tests.core.helpers import create_job, task_status
from tests.engines import engines_of
from tests.polling import DEADLINE
from tests.worker_protocol.conftest import FAR
from tests.worker_protocol.helpers import Run, claim_as, watch

QUIET_JOBS = 4

# A TaskService alone in its process, until its stdin closes.
SECOND_PROCESS = """
import asyncio, sys
from jobtask.server.app import serve

async def main():
    services = await serve(
        sys.argv[1], jobs_listen=None, tasks_listen="127.0.0.1:0", root_token=sys.argv[2],
        lease_ttl=float(sys.argv[3]), safety_wait=float(sys.argv[4]),
    )
    print(services.tasks_port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await services.stop(0.5)

asyncio.run(main())
"""


@dataclass
class Other:
    """The second process's TaskService, seen like a cluster's (same token)."""

    tasks: task_service_pb2_grpc.TaskServiceStub
    root_token: str


@pytest.fixture
async def other(signalled: Cluster, database_url: str) -> AsyncIterator[Other]:
    """A second TaskService process on the same store, woken, like `signalled`, by change
    signals alone within any test deadline (feed polling on SQLite, LISTEN on PostgreSQL)."""
    cluster = signalled
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SECOND_PROCESS,
        database_url,
        str(cluster.root_token),
        str(3 * FAR),
        str(FAR),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stdin is not None
    channel = None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        port = int(line)
        channel = token_channel(f"127.0.0.1:{port}", cluster.root_token or "")
        yield Other(task_service_pb2_grpc.TaskServiceStub(channel), cluster.root_token or "")
    finally:
        if channel is not None:
            await channel.close(None)
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_a_watcher_sees_progress_reported_through_another_process(
    signalled: Cluster, other: Other
) -> None:
    """Each progress report through the other process reaches this process's watcher as the
    watch's very next event: signalled across processes, not found by a periodic read (a
    heartbeat, which would come first, or the safety wait, beyond the deadline)."""
    cluster = signalled
    job = await cluster.jobs.CreateJob(create_job(script="far.py"))
    call = watch(cluster, job.uuid)  # on this process
    events = aiter(call)
    assert (await anext(events)).type == watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT

    a = await claim_as(other, "w1")  # the worker talks to the other process only
    assert a is not None
    run = Run(other, a)
    # The claim's own events (task and job changed) first.
    seen = [await asyncio.wait_for(anext(events), DEADLINE) for _ in range(2)]
    assert {e.type for e in seen} <= {
        watch_pb2.WATCH_EVENT_TYPE_TASK_CHANGED,
        watch_pb2.WATCH_EVENT_TYPE_JOB_CHANGED,
    }, seen
    for i in range(1, 5):
        await run.acked(await run.send(progress=i / 10))
        event = await asyncio.wait_for(anext(events), DEADLINE)
        assert event.type == watch_pb2.WATCH_EVENT_TYPE_TASK_PROGRESS, event
        assert event.task_uuid == a.task.uuid and event.progress == pytest.approx(i / 10)
    call.cancel()


async def test_watchers_of_several_jobs_share_each_feed_read_across_processes(
    signalled: Cluster, other: Other
) -> None:
    """Every commit of another process wakes every watch stream of this one, whatever job it
    watches. The streams of quiet jobs wake together and read together (one statement for
    the batch), not one read per watched job per commit; and the busy job's watcher still
    gets each event as the next."""
    cluster = signalled
    busy = await cluster.jobs.CreateJob(create_job(script="busy.py"))
    # Jobs no worker may start (they wait for 1,000 nodes): their watchers stay quiet.
    quiet = [
        await cluster.jobs.CreateJob(
            create_job(script=f"quiet{i}.py", runtime_constraints={"min_nodes": 1000})
        )
        for i in range(QUIET_JOBS)
    ]
    calls = [watch(cluster, j.uuid) for j in [busy, *quiet]]
    streams = [aiter(call) for call in calls]
    for stream in streams:
        assert (await anext(stream)).type == watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT
    quiet_uuids = {j.uuid for j in quiet}
    # Per follow read (not the snapshot's, not the feed's poll): the quiet jobs it read.
    reads: list[set[str]] = []

    def record(*args: Any) -> None:
        if "events.seq >" in str(args[2]):
            reads.append({u for u in quiet_uuids if u in repr(args[3])})

    engines = engines_of(cluster.services.core.db)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        a = await claim_as(other, "w1")
        assert a is not None and a.job.uuid == busy.uuid
        run = Run(other, a)
        events = streams[0]
        for i in range(1, 9):
            await run.acked(await run.send(progress=i / 10))
            while True:
                event_ = await asyncio.wait_for(anext(events), DEADLINE)
                if event_.type == watch_pb2.WATCH_EVENT_TYPE_TASK_PROGRESS:
                    break
            assert event_.progress == pytest.approx(i / 10)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
        for call in calls:
            call.cancel()
    statements = [len(r) for r in reads if r]
    # Each stream reading on its own read one job a statement: QUIET_JOBS statements per
    # commit for jobs that had nothing. Together, QUIET_JOBS jobs a statement, but for a
    # stream's first read (before the first commit woke them all at once).
    assert statements and 2 * len(statements) <= sum(statements), statements


async def test_a_cancel_through_one_process_reaches_a_worker_on_the_other(
    signalled: Cluster, other: Other
) -> None:
    """The CANCEL is the next message on the other process's idle stream: pushed there by
    the change signal crossing processes."""
    cluster = signalled
    job = await cluster.jobs.CreateJob(create_job(script="far.py"))
    a = await claim_as(other, "w1")
    assert a is not None
    run = Run(other, a)
    await run.acked(await run.send(progress=0.2))
    await cluster.jobs.CancelJob(js.CancelJobRequest(uuid=job.uuid))
    told = await run.recv(DEADLINE)
    assert told is not None and told.instruction == task_service_pb2.INSTRUCTION_CANCEL, told
    final = await run.exit(signal=15)
    assert final.task.status == task_status("canceled")
    with contextlib.suppress(grpc.aio.AioRpcError):
        await run.call.code()
