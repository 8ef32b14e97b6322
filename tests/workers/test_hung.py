"""A hung worker (SIGSTOP: its process frozen, its connection kept open by the kernel) gets
no task, turns lost, and carries on when it thaws: real worker processes."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jobtask.sdk import AsyncClient, NotFoundError
from jobtask.v1 import job_pb2, worker_pb2
from jobtask.worker.session import HEARTBEAT_INTERVAL

from tests.clients.conftest import ROOT_TOKEN, Workers
from tests.conftest import Cluster, running_cluster
from tests.polling import eventually

WS = worker_pb2.WorkerState
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
async def cluster(database_url: str) -> AsyncIterator[Cluster]:
    """Leases of 3 s: a worker is lost 6 s after its last message."""
    async with running_cluster(database_url, lease_ttl=3.0, root_token=ROOT_TOKEN) as c:
        yield c


async def _state(client: AsyncClient, worker_id: str) -> int | None:
    try:
        return (await client.get_worker(worker_id)).state
    except NotFoundError:  # not registered yet: its first claim registers it
        return None


async def test_a_stopped_worker_gets_no_task_turns_lost_and_resumes_when_continued(
    cluster: Cluster, tmp_path: Path
) -> None:
    workers = Workers(cluster, tmp_path)
    try:
        async with AsyncClient.connect(cluster.jobs_addr, cluster.tasks_addr, ROOT_TOKEN) as client:
            hung = await workers.start("hung", slots=4)
            await eventually(lambda: _state(client, hung.worker_id), within=30)
            hung.proc.send_signal(signal.SIGSTOP)
            # Past its promise (a message every HEARTBEAT_INTERVAL) twice over: its session
            # on the server must now hold back, whatever the timing of its last message.
            await asyncio.sleep(2 * HEARTBEAT_INTERVAL + 1.5)
            jobs = [
                await client.submit("slow.py", {"seconds": "0.2", "n": str(i)}) for i in range(3)
            ]
            # Nothing else runs them for a while: before the fix the frozen worker's four
            # credits took them all, each then waiting out its lease and failing once.
            await asyncio.sleep(1.0)
            good = await workers.start("good", slots=1)

            async def all_completed() -> bool:
                got = [await client.get(j.uuid) for j in jobs]
                return all(j.status == job_pb2.JOB_STATUS_COMPLETED for j in got)

            await eventually(all_completed, within=60)
            for job in jobs:
                ran_on = {a.worker_id for a in await client.job_attempts(job.uuid)}
                assert ran_on == {good.worker_id}, (job.uuid, ran_on)
            # Its last message is 6 s (two lease ttls) behind: lost, in the registry.
            await eventually(lambda: _is(client, hung.worker_id, WS.WORKER_STATE_LOST), within=30)

            # Thawed, it speaks again: live, and it runs what comes once the other is gone.
            hung.proc.send_signal(signal.SIGCONT)
            await eventually(lambda: _is(client, hung.worker_id, WS.WORKER_STATE_LIVE), within=30)
            good.proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(good.proc.wait(), 30) == 0
            last = await client.submit("slow.py", {"seconds": "0.2", "n": "last"})

            async def last_completed() -> bool:
                return (await client.get(last.uuid)).status == job_pb2.JOB_STATUS_COMPLETED

            await eventually(last_completed, within=60)
            ran_on = {a.worker_id for a in await client.job_attempts(last.uuid)}
            assert ran_on == {hung.worker_id}
    finally:
        for worker in workers.started:
            if worker.proc.returncode is None:
                worker.proc.send_signal(signal.SIGCONT)
        await workers.stop_all()


async def _is(client: AsyncClient, worker_id: str, state: int) -> bool:
    return await _state(client, worker_id) == state
