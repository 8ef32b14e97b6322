"""Claims with impossible numbers or oversized worker-sent strings are refused by name."""

from __future__ import annotations

import grpc
import pytest
from jobtask.v1 import task_service_pb2

from tests.auth.conftest import code_of
from tests.conftest import Cluster
from tests.core.helpers import create_job, worker
from tests.gateway.conftest import Stack

TS = task_service_pb2


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"max_tasks": -5}, "max_tasks"),
        ({"worker": TS.WorkerInfo(worker_id="w", free_slots=-1)}, "worker.free_slots"),
        ({"worker": worker(worker_id="w" * 1_000_000)}, "worker.worker_id"),
        ({"worker": worker(node="n" * 10_000)}, "worker.node_name"),
        ({"worker": worker(tags=["t" * 1000])}, "worker.tags[0]"),
    ],
)
async def test_grpc_claim_refuses(
    cluster: Cluster, request_fields: dict[str, object], field: str
) -> None:
    await cluster.jobs.CreateJob(create_job(script="s", repository="r", script_version="v"))
    fields = {"worker": worker(), **request_fields}
    request = TS.ClaimTaskRequest(**fields)  # type: ignore[arg-type]
    code, details = await code_of(cluster.tasks.ClaimTask(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(field), details


async def test_rest_claim_refuses_negative_max_tasks(stack: Stack) -> None:
    await stack.create_job()
    answer = await stack.client.post(
        "/arvados/v1/job_tasks/claim",
        json={"worker": {"worker_id": "w", "node_name": "n", "free_slots": 1}, "max_tasks": -5},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0].startswith("max_tasks")


async def test_a_full_worker_gets_no_task(cluster: Cluster) -> None:
    """A worker that gives its total slots and 0 free is full: its claim gets nothing, even
    with a runnable task waiting (without `slots`, 0 still reads as "not given")."""
    await cluster.jobs.CreateJob(create_job(script="s", repository="r", script_version="v"))
    full = TS.WorkerInfo(worker_id="w", node_name="n", slots=2, free_slots=0)
    answer = await cluster.tasks.ClaimTask(TS.ClaimTaskRequest(worker=full, max_tasks=2))
    assert list(answer.assignments) == []
    one_free = TS.WorkerInfo(worker_id="w", node_name="n", slots=2, free_slots=1)
    answer = await cluster.tasks.ClaimTask(TS.ClaimTaskRequest(worker=one_free))
    assert len(answer.assignments) == 1
