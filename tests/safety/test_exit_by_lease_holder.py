"""Only the lease holder (who alone knows the lease id), or an admin token with scope
"all", may report a task's exit; another worker's token is refused."""

from __future__ import annotations

import grpc
from jobtask.domain.scopes import WORKER_SCOPES
from jobtask.v1 import task_service_pb2

from tests.auth.conftest import Auth, code_of
from tests.conftest import Cluster
from tests.core.helpers import create_job, task_status, worker
from tests.gateway.conftest import Stack

TS = task_service_pb2


async def test_grpc_exit_needs_the_lease(cluster: Cluster, auth: Auth) -> None:
    await cluster.jobs.CreateJob(create_job(script="s", repository="r", script_version="v"))
    _, holder_token = await auth.mint(WORKER_SCOPES)
    _, other_token = await auth.mint(WORKER_SCOPES)
    holder, other = auth.stubs(holder_token), auth.stubs(other_token)
    claimed = await holder.tasks.ClaimTask(TS.ClaimTaskRequest(worker=worker("w1")))
    assignment = claimed.assignments[0]
    uuid = assignment.task.uuid
    for _ in range(4):
        code, _ = await code_of(other.tasks.ReportTaskExit(TS.ReportTaskExitRequest(uuid=uuid)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    wrong = TS.ReportTaskExitRequest(uuid=uuid, lease_id="not-the-lease")
    code, _ = await code_of(other.tasks.ReportTaskExit(wrong))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    task = await cluster.tasks.GetTask(TS.GetTaskRequest(uuid=uuid))
    assert task.status == task_status("active")
    # The holder may; so may an admin whose token has scope "all" (cluster.tasks).
    ended = await holder.tasks.ReportTaskExit(
        TS.ReportTaskExitRequest(uuid=uuid, lease_id=assignment.lease.lease_id, exit_code=0)
    )
    assert ended.uuid == uuid


async def test_rest_exit_with_another_workers_token_is_refused(stack: Stack) -> None:
    await stack.create_job()
    tokens = []
    for _ in range(2):
        made = await stack.client.post(
            "/arvados/v1/api_client_authorizations",
            json={"api_client_authorization": {"scopes": list(WORKER_SCOPES)}},
        )
        tokens.append({"Authorization": f"Bearer {made.json()['api_token']}"})
    claimed = await stack.client.post(
        "/arvados/v1/job_tasks/claim",
        json={"worker": {"worker_id": "w1", "node_name": "n1", "free_slots": 1}},
        headers=tokens[0],
    )
    assert claimed.status_code == 200, claimed.text
    uuid = claimed.json()["assignments"][0]["task"]["uuid"]
    for _ in range(4):
        refused = await stack.client.post(
            f"/arvados/v1/job_tasks/{uuid}/exit", json={"exit_code": 1}, headers=tokens[1]
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0].startswith("lease_id")
    task = await stack.client.get(f"/arvados/v1/job_tasks/{uuid}")
    assert task.json()["status"] == "active"
    # An admin with scope "all" (the root token) may end it without the lease.
    ended = await stack.client.post(f"/arvados/v1/job_tasks/{uuid}/exit", json={"exit_code": 1})
    assert ended.status_code == 200, ended.text
