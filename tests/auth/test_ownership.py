"""Who may do what once callers are real users: owners, admins, locked jobs."""

from __future__ import annotations

import grpc
from jobtask.v1 import job_service_pb2, task_service_pb2

from tests.auth.conftest import ALICE, BOB, Auth, code_of
from tests.conftest import Cluster
from tests.core.helpers import create_job, job, job_status, worker

JS, TS = job_service_pb2, task_service_pb2


async def test_users_see_their_own_objects_and_admins_everything(
    cluster: Cluster, auth: Auth
) -> None:
    alice = auth.stubs((await auth.mint(user=ALICE))[1])
    bob = auth.stubs((await auth.mint(user=BOB))[1])
    admin = auth.stubs((await auth.mint(user="zzzzz-tpzed-ad0000000000000", admin=True))[1])
    mine = await alice.jobs.CreateJob(create_job(script="alice.py"))
    assert mine.owner_uuid == ALICE
    # Bob cannot tell Alice's job from a missing one.
    for call in (
        bob.jobs.GetJob(JS.GetJobRequest(uuid=mine.uuid)),
        bob.jobs.CancelJob(JS.CancelJobRequest(uuid=mine.uuid)),
        bob.jobs.DeleteJob(JS.DeleteJobRequest(uuid=mine.uuid)),
    ):
        assert (await code_of(call))[0] == grpc.StatusCode.NOT_FOUND
    assert not (await bob.jobs.ListJobs(JS.ListJobsRequest())).items
    assert not (await bob.tasks.ListTasks(TS.ListTasksRequest())).items
    # Tasks inherit their job's owner.
    (seed,) = (await alice.tasks.ListTasks(TS.ListTasksRequest())).items
    assert seed.owner_uuid == ALICE
    assert (await code_of(bob.tasks.GetTask(TS.GetTaskRequest(uuid=seed.uuid))))[0] == (
        grpc.StatusCode.NOT_FOUND
    )
    # An admin sees and changes everything.
    assert (await admin.jobs.GetJob(JS.GetJobRequest(uuid=mine.uuid))).uuid == mine.uuid
    canceled = await admin.jobs.CancelJob(JS.CancelJobRequest(uuid=mine.uuid))
    assert canceled.status in (job_status("cancel-requested"), job_status("canceled"))


async def test_a_locked_job_changes_only_for_its_locker_but_its_owner_may_cancel(
    cluster: Cluster, auth: Auth
) -> None:
    alice = auth.stubs((await auth.mint(user=ALICE))[1])
    submitted = await alice.jobs.CreateJob(create_job(script="locked.py"))
    # The system (root token) locks it, as a dispatcher starting it would.
    system = auth.stubs(cluster.root_token)
    locked = await system.jobs.LockJob(JS.LockJobRequest(uuid=submitted.uuid))
    assert locked.is_locked_by_uuid == "zzzzz-tpzed-000000000000000"

    change = JS.UpdateJobRequest(uuid=submitted.uuid, job=job(script="other.py"))
    change.update_mask.paths.append("script")
    code, details = await code_of(alice.jobs.UpdateJob(change))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "locked" in details
    # Not even an admin may; the system may.
    code, details = await code_of(cluster.jobs.UpdateJob(change))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "locked" in details
    assert (await system.jobs.UpdateJob(change)).script == "other.py"
    # The owner can still cancel.
    canceled = await alice.jobs.CancelJob(JS.CancelJobRequest(uuid=submitted.uuid))
    assert canceled.status in (job_status("cancel-requested"), job_status("canceled"))


async def test_the_locking_user_may_change_its_locked_job(cluster: Cluster, auth: Auth) -> None:
    alice = auth.stubs((await auth.mint(user=ALICE))[1])
    submitted = await alice.jobs.CreateJob(create_job(script="mine.py"))
    locked = await alice.jobs.LockJob(JS.LockJobRequest(uuid=submitted.uuid))
    assert locked.is_locked_by_uuid == ALICE
    change = JS.UpdateJobRequest(uuid=submitted.uuid, job=job(script_version="v2"))
    change.update_mask.paths.append("script_version")
    assert (await alice.jobs.UpdateJob(change)).script_version == "v2"


async def test_only_workers_and_admins_claim(cluster: Cluster, auth: Auth) -> None:
    """A claim hands out the task's own token, so a user with an ["all"] token must not be
    able to claim (and so act for) other users' tasks."""
    _, alice_token = await auth.mint(user=ALICE)
    alice = auth.stubs(alice_token)
    await alice.jobs.CreateJob(create_job(script="mine.py"))
    request = task_service_pb2.ClaimTaskRequest(worker=worker("alice-w"))
    code, details = await code_of(alice.tasks.ClaimTask(request))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "claim" in details
    _, worker_token = await auth.mint(
        ["POST /arvados/v1/job_tasks/claim", "POST /arvados/v1/job_tasks/run"]
    )
    claimed = await auth.stubs(worker_token).tasks.ClaimTask(request)
    assert len(claimed.assignments) == 1
