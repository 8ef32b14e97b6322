"""Flamenco's job blocklist through real workers: one worker's node breaks every task."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jobtask.domain.statuses import TaskStatus
from jobtask.gateway import serve_gateway
from jobtask.sdk import AsyncClient
from jobtask.store.schema import events, task_attempts
from jobtask.v1 import job_pb2, job_task_pb2
from sqlalchemy import func, select

from tests.clients.conftest import (
    ROOT_TOKEN,
    Workers,
    run_cli,
)
from tests.clients.test_worker import finished
from tests.conftest import Cluster
from tests.polling import eventually

JS = job_pb2.JobStatus
COMPLETED, SOFT_FAILED = TaskStatus.COMPLETED.value, TaskStatus.SOFT_FAILED.value
TS = job_task_pb2.TaskStatus


async def attempts_by(cluster: Cluster, worker_id: str) -> int:
    query = select(func.count()).where(task_attempts.c.worker_id == worker_id)
    async with cluster.services.core.db.read() as conn:
        return int((await conn.execute(query)).scalar() or 0)


async def attempts_of(cluster: Cluster) -> list[tuple[str, int, int, str | None, int | None]]:
    """(worker, task id, attempt, outcome, exit code) of every attempt, in order: a failure's
    message shows what ran where."""
    columns = (task_attempts.c.worker_id, task_attempts.c.task_id, task_attempts.c.attempt)
    query = select(*columns, task_attempts.c.outcome, task_attempts.c.exit_code).order_by(
        task_attempts.c.id
    )
    async with cluster.services.core.db.read() as conn:
        return [(str(r[0]), int(r[1]), int(r[2]), r[3], r[4]) for r in await conn.execute(query)]


async def job_history(cluster: Cluster, job_uuid: str) -> list[tuple[int, str, Any, Any]]:
    """(seq, type, status, blocklist) of the job's own events, in order."""
    query = (
        select(events.c.seq, events.c.type, events.c.payload)
        .where(events.c.job_uuid == job_uuid, events.c.task_uuid.is_(None))
        .order_by(events.c.seq)
    )
    async with cluster.services.core.db.read() as conn:
        rows = await conn.execute(query)
        return [(int(r[0]), str(r[1]), r[2].get("status"), r[2].get("blocklist")) for r in rows]


async def fan_out(client: AsyncClient, n: int, backoff: int = 0, **parameters: Any) -> job_pb2.Job:
    """A job of fail_on_node.py with its seed task and n - 1 more, all runnable at once."""
    constraints = {"blocklist_threshold": 2, "retry_backoff_base_seconds": backoff}
    job = await client.submit(
        "fail_on_node.py", {"bad_node": "bad", **parameters}, constraints=constraints
    )
    for _ in range(n - 1):
        await client.create_task(job.uuid, parameters={})
    return job


async def test_a_failing_worker_is_blocklisted_while_another_runs_the_job(
    live: Cluster, client: AsyncClient, workers: Workers, tmp_path: Any
) -> None:
    # The good node's tasks wait at a gate until the bad worker has failed twice: on a
    # loaded machine the good worker once finished all six before the bad one had started.
    gate = tmp_path / "gate"
    job = await fan_out(client, 6, gate=str(gate))
    good = await workers.start("g", node="good")

    async def good_is_running() -> bool:
        return any(t.status == TS.TASK_STATUS_ACTIVE for t in await client.tasks(job.uuid))

    await eventually(good_is_running, within=30)
    bad = await workers.start("b", node="bad")

    async def bad_failed_twice() -> bool:
        return await attempts_by(live, bad.worker_id) >= 2

    await eventually(bad_failed_twice, within=60)
    gate.touch()
    done = await finished(client, job.uuid, within=90)
    assert done.status == JS.JOB_STATUS_COMPLETED, bad.log()
    (entry,) = done.blocklist
    assert (entry.worker_id, entry.failed_tasks) == (bad.worker_id, 2)
    # Blocklisted in the transaction of its second failure: it never got a third task.
    assert await attempts_by(live, bad.worker_id) == 2
    # The good worker completed each task once. Another attempt of its own may only have
    # lost its lease without an exit: CI once saw seven attempts, not reproduced in 60 runs
    # here, most likely a lease of the tests' 3 seconds lost on a loaded machine. None ran
    # and failed.
    ran = [a for a in await attempts_of(live) if a[0] == good.worker_id]
    completed = [task for _, task, _, outcome, _ in ran if outcome == COMPLETED]
    assert len(completed) == len(set(completed)) == 6, (ran, good.log())
    others = [(outcome, code) for _, _, _, outcome, code in ran if outcome != COMPLETED]
    assert all(other == (SOFT_FAILED, None) for other in others), (ran, good.log())
    shown = await run_cli(live, "get", job.uuid)
    assert f"blocklisted: {bad.worker_id} (failed 2 tasks" in shown.stdout
    # Requeue clears the list, as Flamenco's does.
    await workers.stop_all()
    requeued = await client.requeue(job.uuid)

    async def why() -> Any:
        return await job_history(live, job.uuid), await attempts_of(live)

    assert list(requeued.blocklist) == [], await why()
    assert list((await client.get(job.uuid)).blocklist) == [], await why()


async def test_a_blocklist_that_leaves_no_worker_fails_the_job(
    live: Cluster, client: AsyncClient, workers: Workers, tmp_path: Any
) -> None:
    # The backoff makes the worker take another task before it retries its first.
    job = await fan_out(client, 3, backoff=30)
    bad = await workers.start("b", node="bad")
    done = await finished(client, job.uuid, within=60)
    assert done.status == JS.JOB_STATUS_FAILED
    reason = done.failure_reason
    assert reason.rule == job_pb2.FAILURE_RULE_BLOCKLIST
    assert (reason.exit_code, reason.worker_id) == (3, bad.worker_id)
    assert "this node is broken" in reason.log_tail
    assert [e.worker_id for e in done.blocklist] == [bad.worker_id]
    # The same through the REST gateway.
    gateway = await serve_gateway("127.0.0.1:0", live.jobs_addr, live.tasks_addr)
    try:
        async with httpx.AsyncClient(
            base_url=gateway.url, headers={"Authorization": f"Bearer {ROOT_TOKEN}"}
        ) as http:
            body = (await http.get(f"/arvados/v1/jobs/{job.uuid}")).json()
    finally:
        await gateway.stop()
    assert body["failure_reason"]["rule"] == "blocklist"
    assert body["failure_reason"]["exit_code"] == 3
    assert body["blocklist"][0]["worker_id"] == bad.worker_id
    assert body["blocklist"][0]["failed_tasks"] == 2


@pytest.mark.parametrize("options", [{"blocklist_threshold": 0}])
async def test_a_zero_threshold_turns_the_blocklist_off(
    live: Cluster, client: AsyncClient, workers: Workers, options: dict[str, Any]
) -> None:
    job = await client.submit("fail_on_node.py", {"bad_node": "bad"})
    for _ in range(2):
        await client.create_task(job.uuid, parameters={})
    await workers.start("b", node="bad")
    done = await finished(client, job.uuid, within=60)
    assert done.status == JS.JOB_STATUS_FAILED
    assert done.failure_reason.rule == job_pb2.FAILURE_RULE_RETRY_LIMIT
    assert list(done.blocklist) == []
