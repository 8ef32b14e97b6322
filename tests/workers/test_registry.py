"""The worker registry: ListWorkers / GetWorker / WatchWorkers / ReportWorkerStopped, with
real worker processes, through the SDK, the CLI and the REST gateway."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from jobtask.gateway import serve_gateway
from jobtask.manager.tokens import issue_token
from jobtask.sdk import AsyncClient, NotFoundError, PermissionDeniedError
from jobtask.v1 import job_pb2, task_service_pb2, worker_pb2

from tests.clients.conftest import (
    ROOT_TOKEN,
    Workers,
    run_cli,
)
from tests.conftest import Cluster, running_cluster
from tests.polling import eventually

WS = worker_pb2.WorkerState
WE = worker_pb2.WorkerEventType
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def state_of(client: AsyncClient, worker_id: str) -> int | None:
    for worker in await client.workers():
        if worker.worker_id == worker_id:
            return worker.state
    return None


async def test_a_worker_is_listed_live_with_its_task_then_stopped_on_a_clean_exit(
    client: AsyncClient, live: Cluster, workers: Workers, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pids"
    job = await client.submit("sleeper.py", {"pidfile": str(pidfile)})
    worker = await workers.start("a", slots=2, JOBTASK_WORKER_TAGS="gpu,big")

    async def running() -> worker_pb2.Worker | None:
        try:
            w = await client.get_worker(worker.worker_id)
        except NotFoundError:  # not claimed yet
            return None
        return w if w.task_uuids else None

    seen = await eventually(running, within=30)
    (task,) = await client.tasks(job.uuid)
    assert list(seen.task_uuids) == [task.uuid]
    assert seen.state == WS.WORKER_STATE_LIVE
    assert seen.node_name == "node1"
    assert list(seen.tags) == ["gpu", "big"]
    assert (seen.slots, seen.free_slots) == (2, 1)
    assert seen.cores > 0 and seen.ram_kib > 0
    assert seen.HasField("first_seen_at") and seen.HasField("last_seen_at")

    # The CLI shows it too, in both forms.
    listed = await run_cli(live, "workers", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    # The REST spelling ("live") or the proto name: either ends in "live".
    assert row["worker_id"] == worker.worker_id and row["state"].lower().endswith("live")
    assert row["task_uuids"] == [task.uuid]
    table = await run_cli(live, "workers")
    assert "live" in table.stdout and worker.worker_id in table.stdout

    # A clean shutdown hands the task back and says goodbye.
    worker.proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(worker.proc.wait(), 30) == 0
    stopped = await client.get_worker(worker.worker_id)
    assert stopped.state == WS.WORKER_STATE_STOPPED
    assert stopped.HasField("stopped_at") and not stopped.task_uuids


async def test_a_killed_worker_turns_lost_and_the_watch_tells_it(
    client: AsyncClient, workers: Workers
) -> None:
    events: list[worker_pb2.WorkerEvent] = []

    async def watch() -> None:
        async for event in client.watch_workers():
            events.append(event)

    watcher = asyncio.create_task(watch())
    try:
        await eventually(lambda: events)
        assert events[0].type == WE.WORKER_EVENT_TYPE_SNAPSHOT and not events[0].workers
        worker = await workers.start("k")

        def told(kind: int) -> bool:
            return any(e.type == kind and e.worker.worker_id == worker.worker_id for e in events)

        await eventually(lambda: told(WE.WORKER_EVENT_TYPE_JOINED), within=30)
        assert await state_of(client, worker.worker_id) == WS.WORKER_STATE_LIVE
        worker.proc.kill()  # kill -9: no goodbye
        await worker.proc.wait()
        await eventually(lambda: told(WE.WORKER_EVENT_TYPE_LOST), within=30)
        assert await state_of(client, worker.worker_id) == WS.WORKER_STATE_LOST
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def test_finished_and_failed_attempts_are_counted(
    client: AsyncClient, workers: Workers
) -> None:
    good = await client.submit("chatty.py", {})
    bad = await client.submit("fail.py", {})
    worker = await workers.start("c")

    async def both_done() -> bool:
        jobs = [await client.get(good.uuid), await client.get(bad.uuid)]
        return all(
            j.status in (job_pb2.JOB_STATUS_COMPLETED, job_pb2.JOB_STATUS_FAILED) for j in jobs
        )

    await eventually(both_done, within=60)
    seen = await client.get_worker(worker.worker_id)
    assert seen.tasks_finished >= 1
    assert seen.tasks_failed >= 1


async def test_unknown_workers_and_goodbyes_from_users_are_refused(
    client: AsyncClient, live: Cluster
) -> None:
    with pytest.raises(NotFoundError):
        await client.get_worker("no-such-worker")
    with pytest.raises(NotFoundError):
        await client.report_worker_stopped("no-such-worker")
    token = await _user_token(live)
    async with AsyncClient.connect(live.jobs_addr, live.tasks_addr, token) as as_user:
        assert (await as_user.list_workers()).kind == "arvados#workerList"
        with pytest.raises(PermissionDeniedError):
            await as_user.report_worker_stopped("anyone")


@pytest.fixture
async def patient(database_url: str) -> AsyncIterator[Cluster]:
    """A cluster whose workers stay live a minute after their last call (lease ttl 30 s):
    under `live`'s 1.5 s leases a worker that claimed once was already lost when a loaded
    machine took 3 s to start the gateway (CI failed so)."""
    async with running_cluster(database_url, lease_ttl=30.0, root_token=ROOT_TOKEN) as c:
        yield c


async def test_workers_over_rest_obey_scopes(patient: Cluster) -> None:
    live = patient
    async with AsyncClient.connect(live.jobs_addr, live.tasks_addr, ROOT_TOKEN) as client:
        await client.claim(
            task_service_pb2.WorkerInfo(worker_id="w-rest", node_name="n1", slots=3, free_slots=3)
        )
    gateway = await serve_gateway("127.0.0.1:0", live.jobs_addr, live.tasks_addr)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=20) as http:
            root = {"Authorization": f"OAuth2 {ROOT_TOKEN}"}
            listed = await http.get("/arvados/v1/workers", headers=root)
            assert listed.status_code == 200, listed.text
            body = listed.json()
            assert body["kind"] == "arvados#workerList" and body["items_available"] == 1
            assert body["items"][0]["worker_id"] == "w-rest"
            assert body["items"][0]["slots"] == 3
            one = await http.get("/arvados/v1/workers/w-rest", headers=root)
            assert one.status_code == 200 and one.json()["state"] == "live"
            # A token whose scopes reach only the jobs may not see the workers.
            scoped = await _user_token(live, scopes=["GET /arvados/v1/jobs"])
            refused = await http.get(
                "/arvados/v1/workers", headers={"Authorization": f"Bearer {scoped}"}
            )
            assert refused.status_code == 403, refused.text
    finally:
        await gateway.stop()


async def _user_token(live: Cluster, scopes: list[str] | None = None) -> str:
    core = live.services.core
    _, token = await issue_token(
        core.db,
        core.settings,
        user_uuid=f"{core.settings.cluster_id}-tpzed-000000000000002",
        is_admin=False,
        scopes=scopes or ["all"],
    )
    return token
