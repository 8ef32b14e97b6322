"""Tasks as in-process Python functions, run by a real worker process loaded with
`--functions module:attribute`, through a real cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from jobtask.sdk import AsyncClient
from jobtask.sdk.config import ClientConfig
from jobtask.v1 import job_pb2, job_task_pb2
from jobtask.worker.agent import Worker
from jobtask.worker.config import WorkerConfig
from jobtask.worker.functions import Functions, TaskContext

from tests.clients.conftest import (
    ROOT_TOKEN,
    Workers,
)
from tests.clients.test_worker import finished
from tests.conftest import Cluster
from tests.polling import eventually

JS = job_pb2.JobStatus
TS = job_task_pb2.TaskStatus
ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS: dict[str, Any] = {
    "JOBTASK_WORKER_FUNCTIONS": "tests.clients.function_tasks:functions",
    "PYTHONPATH": str(ROOT),
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_function_tasks_fan_out_and_complete(
    client: AsyncClient, workers: Workers, tmp_path: Path
) -> None:
    job = await client.submit("fn_fanout", {"words": ["alpha", "beta", "gamma"]})
    summed = await client.submit("fn_sync", {"numbers": [1, 2, 3]})
    await workers.start("fn", slots=2, **FUNCTIONS)
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_COMPLETED
    # Children run after their creator, and outputs combine in creation order.
    assert done.output == "ALPHA\nBETA\nGAMMA\n"
    tasks = await client.tasks(job.uuid)
    assert len(tasks) == 4
    seed = tasks[0]
    for child in tasks[1:]:
        assert child.created_by_job_task_uuid == seed.uuid
        assert child.status == TS.TASK_STATUS_COMPLETED and child.progress == 1.0
        assert child.started_at.ToDatetime() >= seed.finished_at.ToDatetime()
    # Attempt lines open and close each attempt's log, as for a script.
    assert "attempt 1 on node1" in seed.log and "attempt 1 ended: exit code 0" in seed.log
    summed_done = await finished(client, summed.uuid)
    assert summed_done.status == JS.JOB_STATUS_COMPLETED and summed_done.output == "6\n"
    (task,) = await client.tasks(summed.uuid)
    assert "counted in a thread" in task.log


async def test_function_failures_follow_the_completion_rule(
    client: AsyncClient, workers: Workers
) -> None:
    refused = await client.submit("fn_refuse")
    crashed = await client.submit("fn_crash")
    await workers.start("fn", slots=2, **FUNCTIONS)
    # success false: failed for good, at once.
    assert (await finished(client, refused.uuid)).status == JS.JOB_STATUS_FAILED
    (task,) = await client.tasks(refused.uuid)
    assert task.status == TS.TASK_STATUS_FAILED and task.failed_count == 0
    # An exception: a temporary failure with the traceback in the log, retried.

    async def retried() -> job_task_pb2.JobTask | None:
        (t,) = await client.tasks(crashed.uuid)
        return t if t.failed_count >= 1 and t.attempt >= 2 else None

    again = await eventually(retried, within=60)
    assert "RuntimeError: attempt 1 crashed" in (again.failed_log or again.log)
    assert "exit code 1" in (again.failed_log or "")


async def test_a_function_runs_in_an_asyncio_task_of_its_own(
    client: AsyncClient, workers: Workers
) -> None:
    """Each function runs in its own asyncio task, named by its task's uuid (two at once
    here): asyncio.current_task() is that task throughout, and asyncio.timeout() inside
    the function times out its wait alone."""
    jobs = [await client.submit("fn_own_task") for _ in range(2)]
    await workers.start("fn", slots=2, **FUNCTIONS)
    for job in jobs:
        done = await finished(client, job.uuid)
        assert done.status == JS.JOB_STATUS_COMPLETED
        assert done.output == "named True same True timed out True cancelling 0\n"


async def test_cancel_reaches_a_function(
    client: AsyncClient, workers: Workers, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    job = await client.submit("fn_wait_for_cancel", {"marker": str(marker)})
    await workers.start("fn", **FUNCTIONS)
    await eventually(lambda: marker.exists() and marker.read_text() == "running")
    await client.cancel(job.uuid)
    await eventually(lambda: marker.read_text() == "cancelled")
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_CANCELED
    (task,) = await client.tasks(job.uuid)
    assert task.status == TS.TASK_STATUS_CANCELED

    async def noted() -> bool:
        (t,) = await client.tasks(job.uuid)
        return "canceled" in t.log and "attempt 1 ended" in t.log

    await eventually(noted)


async def test_a_worker_gets_back_only_what_it_selected(
    live: Cluster, client: AsyncClient, tmp_path: Path
) -> None:
    """create_child_tasks(select=...) answers the children with the fields named (and
    `kind`); a Worker made with decided_select hears its tasks decided with those fields,
    the uuid and the status (what it logs) -- through the real session, in this process."""
    functions = Functions()
    made: list[job_task_pb2.JobTask] = []

    @functions.task("fn_select")
    async def creator(ctx: TaskContext) -> str | None:
        if "child" in ctx.parameters:
            return f"child {ctx.parameters['child']}\n"
        made.extend(await ctx.create_child_tasks([{"child": 1}, {"child": 2}], select=["uuid"]))
        return None

    decided: list[job_task_pb2.JobTask] = []
    job = await client.submit("fn_select")
    config = WorkerConfig(
        client=ClientConfig(live.jobs_addr, live.tasks_addr, ROOT_TOKEN),
        scripts_dir=tmp_path,
        node_name="node1",
        worker_id="w-select",
        slots=2,
        work_root=tmp_path,
    )
    worker = Worker(config, functions, on_decided=decided.append, decided_select=["finished_at"])
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        done = await finished(client, job.uuid)
    finally:
        stop.set()
        await running
    assert done.status == JS.JOB_STATUS_COMPLETED and done.output == "child 1\nchild 2\n"
    tasks = await client.tasks(job.uuid)
    assert [t.uuid for t in made] == [t.uuid for t in tasks[1:]]
    assert all([f.name for f, _ in t.ListFields()] == ["uuid", "kind"] for t in made)
    assert sorted(t.uuid for t in decided) == sorted(t.uuid for t in tasks)
    for task in decided:
        fields = [f.name for f, _ in task.ListFields()]
        assert fields == ["uuid", "kind", "finished_at", "status"], fields
        assert task.status == TS.TASK_STATUS_COMPLETED
