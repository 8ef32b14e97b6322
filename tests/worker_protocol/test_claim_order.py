"""Claim order: job priority first, then order of arrival, across waiting statuses and
priority levels (the claim reads them level by level and status by status)."""

from __future__ import annotations

from tests.conftest import Cluster
from tests.core.helpers import create_job, task_status
from tests.worker_protocol.helpers import Run, claim_as, claim_many, job_with_tasks


async def test_one_claim_spans_priority_levels_best_first(cluster: Cluster) -> None:
    low_old = await cluster.jobs.CreateJob(create_job(script="low-old.py", priority=1))
    high = await cluster.jobs.CreateJob(create_job(script="high.py", priority=5))
    low_new = await cluster.jobs.CreateJob(create_job(script="low-new.py", priority=1))
    lowest = await cluster.jobs.CreateJob(create_job(script="lowest.py", priority=-3))
    claimed = await claim_many(cluster, "w1", 3)
    assert [a.job.uuid for a in claimed] == [high.uuid, low_old.uuid, low_new.uuid]
    (last,) = await claim_many(cluster, "w1", 3)
    assert last.job.uuid == lowest.uuid


async def test_a_soft_failed_task_keeps_its_place_in_order_of_arrival(cluster: Cluster) -> None:
    await job_with_tasks(cluster, "retry.py", 2)
    first = await claim_as(cluster, "w1")
    assert first is not None
    failed = await Run(cluster, first).exit(exit_code=1)  # no success: a temporary failure
    assert failed.task.status == task_status("soft-failed")
    # The soft-failed seed task arrived first: it comes before the two queued ones.
    claimed = await claim_many(cluster, "w2", 3)
    assert len(claimed) == 3
    assert claimed[0].task.uuid == first.task.uuid
    assert [a.task.qsequence for a in claimed] == sorted(a.task.qsequence for a in claimed)
