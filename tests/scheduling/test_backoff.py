"""Retry backoff through a real worker: the waits are read from the change feed."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import pytest
from jobtask.sdk import AsyncClient
from jobtask.store.rows import task_payload
from jobtask.store.schema import events
from jobtask.v1 import job_pb2, task_service_pb2
from sqlalchemy import select

from tests.clients.conftest import Workers
from tests.clients.test_worker import finished
from tests.conftest import Cluster
from tests.core.helpers import create_job
from tests.worker_protocol.helpers import claim_as

JS = job_pb2.JobStatus


async def task_history(cluster: Cluster, task_uuid: str) -> list[dict[str, Any]]:
    """The task as each task_changed event of the feed recorded it, in order."""
    query = (
        select(events.c.payload)
        .where(events.c.task_uuid == task_uuid, events.c.type == "task_changed")
        .order_by(events.c.seq)
    )
    async with cluster.services.core.db.read() as conn:
        return [task_payload(p) for (p,) in await conn.execute(query)]


def at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


async def test_soft_failures_wait_an_exponential_bounded_jittered_backoff(
    live: Cluster, client: AsyncClient, workers: Workers
) -> None:
    base, cap = 1, 2
    job = await client.submit(
        "fail.py",
        constraints={"retry_backoff_base_seconds": base, "retry_backoff_max_seconds": cap},
    )
    await workers.start("flaky")
    done = await finished(client, job.uuid, within=60)
    assert done.status == JS.JOB_STATUS_FAILED
    (task,) = await client.tasks(job.uuid)
    history = await task_history(live, task.uuid)
    soft = [i for i, e in enumerate(history) if e["status"] == "soft-failed"]
    assert len(soft) == 2  # the retry limit (3) still fails it on the third failure
    for n, i in enumerate(soft, start=1):
        failed = history[i]
        wait = (at(failed["runnable_after"]) - at(failed["failed_at"])).total_seconds()
        bound = min(cap, base * 2 ** (n - 1))
        assert bound / 2 <= wait <= bound, (n, wait)
        # The next attempt started no earlier than the task's "not before".
        started = next(e for e in history[i + 1 :] if e["status"] == "active")
        assert at(started["started_at"]) >= at(failed["runnable_after"])
    assert history[-1]["status"] == "failed"
    assert task.failure_reason.rule == job_pb2.FAILURE_RULE_RETRY_LIMIT


# A lease longer than the suite's 1.5 s: the test holds it between its claim and its report
# without heartbeats, and a loaded CI machine once took longer (the report then found it
# expired).
@pytest.mark.parametrize("options", [{"retry_backoff_base": 1.0, "lease_ttl": 30.0}])
async def test_a_waiting_claim_wakes_when_the_backoff_ends(
    live: Cluster, options: dict[str, Any]
) -> None:
    """The server's default backoff, and a long-poll claim woken by its end (nothing in
    the store changes when it ends)."""
    await live.jobs.CreateJob(create_job(script="fail.py"))
    first = await claim_as(live, "w1")
    assert first is not None
    await live.tasks.ReportTaskExit(
        task_service_pb2.ReportTaskExitRequest(
            uuid=first.task.uuid, lease_id=first.lease.lease_id, exit_code=3
        )
    )
    again = await claim_as(live, "w1", wait=10.0)
    assert again is not None and again.task.uuid == first.task.uuid
    failed_at = again.task.failed_at.ToDatetime(dt.UTC)
    not_before = again.task.runnable_after.ToDatetime(dt.UTC)
    assert 0.5 <= (not_before - failed_at).total_seconds() <= 1.0
    assert again.task.started_at.ToDatetime(dt.UTC) >= not_before


@pytest.mark.parametrize(
    ("constraints", "field"),
    [
        ({"retry_backoff_base_seconds": -1}, "retry_backoff_base_seconds"),
        ({"retry_backoff_base_seconds": 5, "retry_backoff_max_seconds": 2}, "retry_backoff_max"),
        ({"retry_backoff_max_seconds": 10**7}, "retry_backoff_max_seconds"),
        ({"blocklist_threshold": -2}, "blocklist_threshold"),
    ],
)
async def test_bad_scheduling_constraints_are_refused_naming_the_key(
    live: Cluster, constraints: dict[str, int], field: str
) -> None:
    job = create_job(script="fail.py")
    for key, value in constraints.items():
        setattr(job.job.runtime_constraints, key, value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.jobs.CreateJob(job)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"runtime_constraints.{field}" in (caught.value.details() or "")
