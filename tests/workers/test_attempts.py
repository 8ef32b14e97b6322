"""Attempt history: every attempt at a task keeps its worker, node, times, outcome and the
process's exit code or signal; ListTaskAttempts / ListJobAttempts over gRPC and REST, for
whoever may read the task or job."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from jobtask.gateway import serve_gateway
from jobtask.manager.tokens import issue_token
from jobtask.sdk import AsyncClient, NotFoundError
from jobtask.v1 import job_pb2

from tests.clients.conftest import (
    ROOT_TOKEN,
    Workers,
)
from tests.conftest import Cluster
from tests.polling import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def test_each_attempt_keeps_its_worker_and_exit_code(
    client: AsyncClient, live: Cluster, workers: Workers
) -> None:
    job = await client.submit("fail.py", {})
    worker = await workers.start("x")

    async def failed() -> bool:
        return (await client.get(job.uuid)).status == job_pb2.JOB_STATUS_FAILED

    await eventually(failed, within=120)
    (task,) = await client.tasks(job.uuid)
    attempts = await client.task_attempts(task.uuid)
    assert len(attempts) >= 2
    assert [a.attempt for a in attempts] == list(range(1, len(attempts) + 1))
    for a in attempts:
        assert (a.task_uuid, a.job_uuid) == (task.uuid, job.uuid)
        assert (a.worker_id, a.node_name) == (worker.worker_id, "node1")
        assert a.exit_code == 3 and not a.HasField("signal")
        assert a.ended_at.ToDatetime() >= a.started_at.ToDatetime()
    # Temporary failures leave the task soft-failed (to retry); the last attempt fails it for good.
    assert [a.outcome for a in attempts[:-1]] == ["soft-failed"] * (len(attempts) - 1)
    assert attempts[-1].outcome == "failed"
    # The job's list holds the same attempts.
    assert await client.job_attempts(job.uuid) == attempts

    # Over REST, in both routes, with paging.
    gateway = await serve_gateway("127.0.0.1:0", live.jobs_addr, live.tasks_addr)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=20) as http:
            root = {"Authorization": f"OAuth2 {ROOT_TOKEN}"}
            by_task = await http.get(f"/arvados/v1/job_tasks/{task.uuid}/attempts", headers=root)
            assert by_task.status_code == 200, by_task.text
            body = by_task.json()
            assert body["kind"] == "arvados#jobTaskAttemptList"
            assert body["items_available"] == len(attempts)
            first = body["items"][0]
            assert first["kind"] == "arvados#jobTaskAttempt"
            assert first["worker_id"] == worker.worker_id and first["exit_code"] == 3
            assert first["outcome"] == "soft-failed" and first["ended_at"]
            by_job = await http.get(
                f"/arvados/v1/jobs/{job.uuid}/attempts",
                params={"limit": 1, "offset": 1},
                headers=root,
            )
            assert by_job.status_code == 200, by_job.text
            page = by_job.json()
            assert page["items_available"] == len(attempts) and page["offset"] == 1
            assert [i["attempt"] for i in page["items"]] == [2]
            bad = await http.get(
                f"/arvados/v1/jobs/{job.uuid}/attempts", params={"limit": -1}, headers=root
            )
            assert bad.status_code == 422 or bad.status_code == 400, bad.text
            assert "limit" in bad.text
    finally:
        await gateway.stop()

    # Another user may not read them: as for GetTask and GetJob, the task is not found.
    core = live.services.core
    _, token = await issue_token(
        core.db,
        core.settings,
        user_uuid=f"{core.settings.cluster_id}-tpzed-000000000000002",
        is_admin=False,
        scopes=["all"],
    )
    async with AsyncClient.connect(live.jobs_addr, live.tasks_addr, token) as other:
        with pytest.raises(NotFoundError):
            await other.task_attempts(task.uuid)
        with pytest.raises(NotFoundError):
            await other.job_attempts(job.uuid)


async def test_a_canceled_attempt_keeps_the_signal_that_ended_it(
    client: AsyncClient, workers: Workers, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pids"
    job = await client.submit("sleeper.py", {"pidfile": str(pidfile)})
    await workers.start("s")
    await eventually(pidfile.exists, within=30)
    (task,) = await client.tasks(job.uuid)
    (running,) = await client.task_attempts(task.uuid)
    assert not running.HasField("ended_at") and running.outcome == ""
    await client.cancel(job.uuid)

    async def ended() -> object:
        (attempt,) = await client.task_attempts(task.uuid)
        return attempt if attempt.HasField("ended_at") else None

    attempt = await eventually(ended, within=60)
    assert attempt.outcome == "ended after canceled"
    # The worker stops the process with a signal (SIGTERM, or SIGKILL if it lingers).
    assert attempt.HasField("signal") or attempt.HasField("exit_code")
