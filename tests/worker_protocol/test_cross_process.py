"""Two TaskService processes on one database: each hears the other's commits (SQLite: by
polling the feed; PostgreSQL: by LISTEN/NOTIFY), so watchers and worker streams on one see
what happens through the other."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from jobtask.v1 import job_service_pb2 as js
from jobtask.v1 import task_service_pb2, task_service_pb2_grpc, watch_pb2

from tests.conftest import ROOT, Cluster, token_channel
from tests.core.helpers import create_job, task_status
from tests.worker_protocol.helpers import Run, claim_as, watch

# A TaskService alone in its process, until its stdin closes.
SECOND_PROCESS = """
import asyncio, sys
from jobtask.server.app import serve

async def main():
    services = await serve(
        sys.argv[1], jobs_listen=None, tasks_listen="127.0.0.1:0", root_token=sys.argv[2],
        lease_ttl=3.0,
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
async def other(cluster: Cluster, database_url: str) -> AsyncIterator[Other]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SECOND_PROCESS,
        database_url,
        cluster.root_token,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stdin is not None
    channel = None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        port = int(line)
        channel = token_channel(f"127.0.0.1:{port}", cluster.root_token)
        yield Other(task_service_pb2_grpc.TaskServiceStub(channel), cluster.root_token)
    finally:
        if channel is not None:
            await channel.close()
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_a_watcher_sees_progress_reported_through_another_process(
    cluster: Cluster, other: Other
) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="far.py"))
    call = watch(cluster, job.uuid)  # on this process
    events = aiter(call)
    assert (await anext(events)).type == watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT

    a = await claim_as(other, "w1")  # the worker talks to the other process only
    assert a is not None
    run = Run(other, a)
    latencies = []
    for i in range(1, 5):
        await run.acked(await run.send(progress=i / 10))
        durable = time.monotonic()
        while True:
            event = await asyncio.wait_for(anext(events), 5)
            if event.type == watch_pb2.WATCH_EVENT_TYPE_TASK_PROGRESS:
                break
        latencies.append(time.monotonic() - durable)
        assert event.task_uuid == a.task.uuid and event.progress == pytest.approx(i / 10)
        await asyncio.sleep(0.2)
    call.cancel()
    # Signalled, not found by the one-second safety poll.
    assert max(latencies) < 0.75, latencies


async def test_a_cancel_through_one_process_reaches_a_worker_on_the_other(
    cluster: Cluster, other: Other
) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="far.py"))
    a = await claim_as(other, "w1")
    assert a is not None
    run = Run(other, a)
    await run.acked(await run.send(progress=0.2))
    started = time.monotonic()
    await cluster.jobs.CancelJob(js.CancelJobRequest(uuid=job.uuid))
    await run.until(lambda r: r.instruction == task_service_pb2.INSTRUCTION_CANCEL, within=2)
    assert time.monotonic() - started < 1.0
    final = await run.exit(signal=15)
    assert final.task.status == task_status("canceled")
    with contextlib.suppress(grpc.aio.AioRpcError):
        await run.call.code()
