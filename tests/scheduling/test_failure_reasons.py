"""Why a task failed for good, on the task and its job, through real workers and the CLI."""

from __future__ import annotations

import grpc
import pytest
from jobtask.sdk import AsyncClient
from jobtask.v1 import job_pb2

from tests.clients.conftest import Workers, run_cli
from tests.clients.test_worker import finished
from tests.conftest import Cluster
from tests.core.helpers import create_job

JS = job_pb2.JobStatus


async def test_success_false_is_the_rule_with_the_exit_code_and_log(
    live: Cluster, client: AsyncClient, workers: Workers
) -> None:
    job = await client.submit("fail.py", {"mode": "permanent"})
    await workers.start("w")
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_FAILED
    (task,) = await client.tasks(job.uuid)
    for reason in (task.failure_reason, done.failure_reason):
        assert reason.rule == job_pb2.FAILURE_RULE_SUCCESS_FALSE
        assert reason.exit_code == 3 and reason.task_uuid == task.uuid
        assert "about to fail" in reason.log_tail
    shown = await run_cli(live, "get", job.uuid)
    assert "failed:      success-false: the task reported success=false (exit code 3)" in (
        shown.stdout
    )
    assert "| about to fail" in shown.stdout
    listed = await run_cli(live, "tasks", job.uuid)
    assert "success-false: the task reported success=false (exit code 3)" in listed.stdout


async def test_a_script_not_found_is_named_as_the_rule(
    live: Cluster, client: AsyncClient, workers: Workers
) -> None:
    job = await client.submit("no_such_script.py")
    await workers.start("w")
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_FAILED
    assert done.failure_reason.rule == job_pb2.FAILURE_RULE_SCRIPT_NOT_FOUND
    assert done.failure_reason.exit_code == 127
    assert "not found" in done.failure_reason.log_tail
    listed = await run_cli(live, "tasks", job.uuid)
    assert "script-not-found:" in listed.stdout


async def test_requeue_clears_the_reasons(
    live: Cluster, client: AsyncClient, workers: Workers
) -> None:
    job = await client.submit("fail.py", {"mode": "permanent"})
    await workers.start("w")
    await finished(client, job.uuid)
    await workers.stop_all()
    requeued = await client.requeue(job.uuid)
    assert not requeued.HasField("failure_reason")
    (task,) = await client.tasks(job.uuid)
    assert not task.HasField("failure_reason")


async def test_manager_set_scheduling_fields_are_refused_on_create(live: Cluster) -> None:
    """A blocklist or failure reason sent by a caller is the manager's to set (not a crash)."""
    request = create_job(script="fail.py")
    request.job.blocklist.add(worker_id="w1", failed_tasks=3)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.jobs.CreateJob(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "blocklist" in (caught.value.details() or "")
