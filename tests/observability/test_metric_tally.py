"""A transaction's metric steps are taken once it committed (jobtask.store.database's tally):
one step per counter a transaction, each observation kept -- the same totals as a step per
task -- and none for a transaction rolled back."""

from __future__ import annotations

from typing import Any

import pytest
from jobtask.observability import metrics
from jobtask.store.database import Database, count_after_commit, observe_after_commit
from jobtask.v1 import job_service_pb2, task_service_pb2
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import Cluster
from tests.core.helpers import create_job, succeed, worker


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_steps_are_summed_per_counter_and_taken_only_after_commit(database_url: str) -> None:
    registry = CollectorRegistry()
    steps = Counter("tally_steps", "", registry=registry)
    labelled = Counter("tally_labelled", "", ["kind"], registry=registry)
    seconds = Histogram("tally_seconds", "", buckets=(1.0, 10.0), registry=registry)
    seen_inside: list[float] = []
    db = Database(database_url)
    try:

        async def counted(conn: AsyncConnection) -> None:
            await conn.execute(text("SELECT 1"))
            for value in (0.5, 2.0, 20.0):
                count_after_commit(conn, steps)
                observe_after_commit(conn, seconds, value)
            count_after_commit(conn, labelled.labels("a"), 3)
            count_after_commit(conn, labelled.labels("b"))
            seen_inside.append(_sample(registry, "tally_steps_total"))

        await db.transact(counted)
        assert seen_inside == [0.0]  # nothing before the commit
        assert _sample(registry, "tally_steps_total") == 3
        assert _sample(registry, "tally_labelled_total", kind="a") == 3
        assert _sample(registry, "tally_labelled_total", kind="b") == 1
        assert _sample(registry, "tally_seconds_count") == 3
        assert _sample(registry, "tally_seconds_sum") == 22.5
        assert _sample(registry, "tally_seconds_bucket", le="1.0") == 1
        assert _sample(registry, "tally_seconds_bucket", le="10.0") == 2

        async def rolled_back(conn: AsyncConnection) -> None:
            count_after_commit(conn, steps, 100)
            observe_after_commit(conn, seconds, 5.0)
            raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            await db.transact(rolled_back)

        # The next transaction on the same pooled connection starts a tally of its own.
        async def once(conn: AsyncConnection) -> None:
            await conn.execute(text("SELECT 1"))
            count_after_commit(conn, steps)

        await db.transact(once)
        await db.transact(lambda conn: conn.execute(text("SELECT 1")))
        assert _sample(registry, "tally_steps_total") == 4
        assert _sample(registry, "tally_seconds_count") == 3
    finally:
        await db.dispose()


def _value(metric: Any) -> float:
    return float(metric._value.get())


def _dispatched() -> float:
    """How many dispatch waits were observed."""
    (family,) = metrics.DISPATCH_SECONDS.collect()
    return next(s.value for s in family.samples if s.name.endswith("_count"))


async def test_a_claim_and_exits_of_several_tasks_count_each_task(cluster: Cluster) -> None:
    jobs = job_service_pb2.BatchCreateJobsRequest(
        requests=[create_job(script=f"s{i}.py") for i in range(3)]
    )
    await cluster.jobs.BatchCreateJobs(jobs)
    claimed = metrics.TASKS_CLAIMED
    completed = metrics.TASKS_FINISHED.labels("completed")
    finished = metrics.JOBS_FINISHED.labels("completed")
    before = (_value(claimed), _value(completed), _value(finished))
    dispatch_before = _dispatched()
    slots = worker()
    slots.free_slots = 3
    answer = await cluster.tasks.ClaimTask(
        task_service_pb2.ClaimTaskRequest(worker=slots, max_tasks=3)
    )
    assert len(answer.assignments) == 3  # one claim, one transaction
    assert _value(claimed) - before[0] == 3
    assert _dispatched() - dispatch_before == 3
    for assignment in answer.assignments:
        await succeed(cluster, assignment)
    assert _value(completed) - before[1] == 3
    assert _value(finished) - before[2] == 3
