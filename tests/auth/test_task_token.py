"""A claimed task's own token: its job, its task, children in its job -- nothing else."""

from __future__ import annotations

import grpc
from jobtask.v1 import auth_service_pb2, job_service_pb2, task_service_pb2

from tests.auth.conftest import ALICE, Auth, code_of
from tests.conftest import Cluster
from tests.core.helpers import (
    add_task,
    claim,
    create_job,
    exit_,
    job_tasks,
    report,
    task,
    token_md,
)

AS, JS, TS = auth_service_pb2, job_service_pb2, task_service_pb2
OK = grpc.StatusCode.OK
DENIED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)


async def test_a_task_token_reaches_its_own_job_and_task_only(cluster: Cluster, auth: Auth) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="mine.py"))
    mine = await claim(cluster)
    assert mine is not None and mine.task.job_uuid == job.uuid
    sibling = await add_task(cluster, job.uuid, sequence=1, parameters={"n": 1})
    other_job = await cluster.jobs.CreateJob(create_job(script="theirs.py"))
    (other_task,) = await job_tasks(cluster, other_job.uuid)

    own = auth.stubs(mine.task_token)
    # Allowed: read its job and its task, report on its task, create children in its job.
    assert (await own.jobs.GetJob(JS.GetJobRequest(uuid=job.uuid))).uuid == job.uuid
    assert (await own.tasks.GetTask(TS.GetTaskRequest(uuid=mine.task.uuid))).uuid == mine.task.uuid
    reported = await report(cluster, mine, progress=0.5)
    assert reported.progress == 0.5
    child = await own.tasks.CreateTask(
        TS.CreateTaskRequest(
            job_task=task(job_uuid=job.uuid, sequence=1, created_by_job_task_uuid=mine.task.uuid)
        )
    )
    assert child.job_uuid == job.uuid

    # Refused: another task of the same job, another job, anything else.
    refused = {
        "get sibling": own.tasks.GetTask(TS.GetTaskRequest(uuid=sibling.uuid)),
        "update sibling": own.tasks.UpdateTask(
            TS.UpdateTaskRequest(uuid=sibling.uuid, job_task=task(progress=0.1))
        ),
        "get other job": own.jobs.GetJob(JS.GetJobRequest(uuid=other_job.uuid)),
        "get other task": own.tasks.GetTask(TS.GetTaskRequest(uuid=other_task.uuid)),
        "update other task": own.tasks.UpdateTask(
            TS.UpdateTaskRequest(uuid=other_task.uuid, job_task=task(progress=0.1))
        ),
        "create in other job": own.tasks.CreateTask(
            TS.CreateTaskRequest(job_task=task(job_uuid=other_job.uuid))
        ),
        "list tasks": own.tasks.ListTasks(TS.ListTasksRequest()),
        "list jobs": own.jobs.ListJobs(JS.ListJobsRequest()),
        "cancel own job": own.jobs.CancelJob(JS.CancelJobRequest(uuid=job.uuid)),
        "delete own task": own.tasks.DeleteTask(TS.DeleteTaskRequest(uuid=mine.task.uuid)),
        "claim": own.tasks.ClaimTask(TS.ClaimTaskRequest()),
        "new token": own.auth.CreateApiClientAuthorization(
            AS.CreateApiClientAuthorizationRequest()
        ),
    }
    for what, call in refused.items():
        code, _ = await code_of(call)
        assert code in DENIED, what
    # Creating in another job passes the scope check (POST /job_tasks) and is refused by the
    # job manager, as if that job did not exist.
    code, _ = await code_of(
        own.tasks.CreateTask(TS.CreateTaskRequest(job_task=task(job_uuid=other_job.uuid)))
    )
    assert code == grpc.StatusCode.NOT_FOUND


async def test_a_task_token_dies_with_its_lease(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="short.py"))
    mine = await claim(cluster)
    await report(cluster, mine, progress=1.0, success=True)
    await exit_(cluster, mine)
    code, details = await code_of(
        cluster.tasks.GetTask(
            TS.GetTaskRequest(uuid=mine.task.uuid), metadata=token_md(mine.task_token)
        )
    )
    assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "Not logged in")


async def test_only_the_task_token_the_manager_and_admins_report_progress(
    cluster: Cluster, auth: Auth
) -> None:
    """Seed 000: a task is PATCHed only by the process dispatched to it and the manager."""
    _, alice_token = await auth.mint(user=ALICE)
    alice = auth.stubs(alice_token)
    job = await alice.jobs.CreateJob(create_job(script="owned.py"))
    mine = await claim(cluster)
    assert mine.task.job_uuid == job.uuid and mine.task.owner_uuid == ALICE

    def progress(value: float) -> TS.UpdateTaskRequest:
        request = TS.UpdateTaskRequest(uuid=mine.task.uuid, job_task=task(progress=value))
        request.update_mask.paths.append("progress")
        return request

    # The owner, even with every scope, is not the process running the task.
    code, _ = await code_of(alice.tasks.UpdateTask(progress(0.3)))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    # The task's own token, the system (root token) and admins may.
    assert (await report(cluster, mine, progress=0.4)).progress == 0.4
    system = auth.stubs(cluster.root_token)
    assert (await system.tasks.UpdateTask(progress(0.6))).progress == 0.6
    assert (await cluster.tasks.UpdateTask(progress(0.7))).progress == 0.7
    # A task token of another task may not, even within the same owner's job.
    await add_task(cluster, job.uuid, sequence=0)
    other = await claim(cluster, "w2")
    assert other is not None
    code, _ = await code_of(
        cluster.tasks.UpdateTask(progress(0.9), metadata=token_md(other.task_token))
    )
    assert code in DENIED
