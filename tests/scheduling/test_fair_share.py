"""Fair share at equal priority: claims take turns between owners."""

from __future__ import annotations

from typing import Any

import pytest
from jobtask.manager.tokens import issue_token
from jobtask.v1 import job_service_pb2_grpc, task_service_pb2, task_service_pb2_grpc

from tests.conftest import Cluster, token_channel
from tests.core.helpers import create_job, task

TSP = task_service_pb2


async def user_stubs(cluster: Cluster, user: str) -> tuple[Any, Any, Any]:
    """Stubs that call as a plain (not admin) user."""
    settings = cluster.services.core.settings
    _, token = await issue_token(
        cluster.services.core.db, settings, user_uuid=f"zzzzz-tpzed-{user:0>15}"
    )
    jobs = token_channel(cluster.jobs_addr, token)
    tasks = token_channel(cluster.tasks_addr, token)
    cluster.channels.extend([jobs, tasks])
    return (
        job_service_pb2_grpc.JobServiceStub(jobs),
        task_service_pb2_grpc.TaskServiceStub(tasks),
        token,
    )


async def claim_order(cluster: Cluster, n: int) -> list[str]:
    """Owners of the tasks of n claims of one task each, in order."""
    owners = []
    for _ in range(n):
        request = TSP.ClaimTaskRequest(
            worker=TSP.WorkerInfo(worker_id="w1", node_name="node1", free_slots=1)
        )
        (assignment,) = (await cluster.tasks.ClaimTask(request)).assignments
        owners.append(assignment.task.owner_uuid[-1])
    return owners


async def submit_both(cluster: Cluster) -> None:
    """Owner a: one job of 8 tasks, first. Owner b: three one-task jobs, after it."""
    jobs_a, tasks_a, _ = await user_stubs(cluster, "a")
    jobs_b, _, _ = await user_stubs(cluster, "b")
    big = await jobs_a.CreateJob(create_job(script="a.py"))
    for _ in range(7):
        await tasks_a.CreateTask(TSP.CreateTaskRequest(job_task=task(job_uuid=big.uuid)))
    for i in range(3):
        await jobs_b.CreateJob(create_job(script="b.py", script_parameters={"i": i}))


async def test_owners_take_turns_at_equal_priority(cluster: Cluster) -> None:
    await submit_both(cluster)
    assert await claim_order(cluster, 8) == ["a", "b", "a", "b", "a", "b", "a", "a"]


async def test_priority_wins_over_turns(cluster: Cluster) -> None:
    jobs_a, _, _ = await user_stubs(cluster, "a")
    jobs_b, _, _ = await user_stubs(cluster, "b")
    for i in range(3):
        await jobs_a.CreateJob(create_job(script="a.py", priority=5, script_parameters={"i": i}))
    await jobs_b.CreateJob(create_job(script="b.py", priority=1))
    assert await claim_order(cluster, 4) == ["a", "a", "a", "b"]


async def test_one_claim_of_many_tasks_interleaves_owners(cluster: Cluster) -> None:
    await submit_both(cluster)
    request = TSP.ClaimTaskRequest(
        worker=TSP.WorkerInfo(worker_id="w1", node_name="node1", free_slots=6), max_tasks=6
    )
    claimed = (await cluster.tasks.ClaimTask(request)).assignments
    assert [a.task.owner_uuid[-1] for a in claimed] == ["a", "b", "a", "b", "a", "b"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_without_fair_share_claims_follow_arrival(database_url: str) -> None:
    from tests.conftest import start_cluster

    cluster = await start_cluster(database_url, fair_share=False)
    try:
        await submit_both(cluster)
        assert await claim_order(cluster, 9) == ["a"] * 8 + ["b"]
    finally:
        await cluster.close()
