"""A revoked token's open streams end with UNAUTHENTICATED (issue 13, item 6): gRPC
WatchJob and WatchTasks, the gateway's SSE watch, and a worker's RunTask stream and
WorkerSession.

Streams re-check their token every JOBTASK_STREAM_RECHECK_SECONDS (short here)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from jobtask.domain.scopes import WORKER_SCOPES
from jobtask.manager.tokens import issue_token, revoke_token
from jobtask.v1 import job_service_pb2, task_service_pb2, watch_pb2

from tests.auth.conftest import Auth
from tests.conftest import Cluster
from tests.core.helpers import create_job, token_md, worker
from tests.gateway.conftest import Stack
from tests.gateway.test_stream import is_snapshot_done, read_events

TSP = task_service_pb2
JOB = create_job(script="hash.py", repository="a/b", script_version="master")


@pytest.fixture(autouse=True)
def short_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBTASK_STREAM_RECHECK_SECONDS", "0.2")


async def _until_snapshot_done(call: Any) -> None:
    async for event in call:
        if event.type == watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT and event.snapshot_done:
            return
    raise AssertionError("the stream ended before its snapshot")


async def _ends_unauthenticated(call: Any) -> tuple[grpc.StatusCode, str]:
    """Reads the stream to its end (heartbeats and all) and returns how it ended."""
    try:
        async with asyncio.timeout(30):
            async for _ in call:
                pass
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


def _watch_job(stubs: Any, job_uuid: str) -> Any:
    return stubs.jobs.WatchJob(job_service_pb2.WatchJobRequest(uuid=job_uuid))


def _watch_tasks(stubs: Any, job_uuid: str) -> Any:
    return stubs.tasks.WatchTasks(TSP.WatchTasksRequest(job_uuid=job_uuid))


@pytest.mark.parametrize("open_watch", [_watch_job, _watch_tasks], ids=["WatchJob", "WatchTasks"])
async def test_a_watch_ends_once_its_token_is_revoked(
    cluster: Cluster, auth: Auth, open_watch: Any
) -> None:
    job = await cluster.jobs.CreateJob(JOB)
    uuid, token = await auth.mint(admin=True)
    call = open_watch(auth.stubs(token), job.uuid)
    await _until_snapshot_done(call)
    await revoke_token(auth.core.db, uuid)
    assert await _ends_unauthenticated(call) == (grpc.StatusCode.UNAUTHENTICATED, "Not logged in")


async def test_an_unrevoked_watch_goes_on(cluster: Cluster, auth: Auth) -> None:
    """The re-check does not end a stream whose token is still good."""
    job = await cluster.jobs.CreateJob(JOB)
    _, token = await auth.mint(admin=True)
    call = _watch_tasks(auth.stubs(token), job.uuid)
    await _until_snapshot_done(call)
    await asyncio.sleep(1.0)  # several re-checks
    await cluster.jobs.CancelJob(job_service_pb2.CancelJobRequest(uuid=job.uuid))
    assert await _ends_unauthenticated(call) == (grpc.StatusCode.OK, "")


async def test_run_task_on_a_revoked_worker_token_ends(cluster: Cluster, auth: Auth) -> None:
    await cluster.jobs.CreateJob(JOB)
    uuid, token = await auth.mint(WORKER_SCOPES, admin=True)
    stubs = auth.stubs(token)
    claimed = await stubs.tasks.ClaimTask(TSP.ClaimTaskRequest(worker=worker("w1")))
    (assignment,) = claimed.assignments
    call = stubs.tasks.RunTask(metadata=token_md(token))
    await call.write(
        TSP.RunTaskRequest(
            seq=1,
            task_uuid=assignment.task.uuid,
            lease_id=assignment.lease.lease_id,
            progress=0.5,
        )
    )
    async with asyncio.timeout(30):
        while (await call.read()).acked_seq < 1:
            pass
    await revoke_token(auth.core.db, uuid)
    try:
        async with asyncio.timeout(30):
            while (response := await call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
                assert not response.HasField("task"), "the task was finished on a revoked token"
        ended = (grpc.StatusCode.OK, "")
    except grpc.aio.AioRpcError as err:
        ended = (err.code(), err.details() or "")
    assert ended == (grpc.StatusCode.UNAUTHENTICATED, "Not logged in")
    # And nothing more is taken from it.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.tasks.ClaimTask(TSP.ClaimTaskRequest(worker=worker("w1")))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_sse_watch_ends_with_an_error_once_its_token_is_revoked(stack: Stack) -> None:
    job = await stack.create_job()
    core = stack.services.core
    record, token = await issue_token(core.db, core.settings, is_admin=True, scopes=["all"])
    url = f"/arvados/v1/jobs/{job['uuid']}/watch"
    headers = {"Authorization": f"Bearer {token}"}
    async with asyncio.timeout(30):
        async with stack.client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            await read_events(response, until=is_snapshot_done)
            await revoke_token(core.db, record.uuid)
            rest = await read_events(response)  # returns when the stream ends
    errors = [e for e in rest if e.get("event") == "error"]
    assert len(errors) == 1 and rest[-1] is errors[0], rest
    assert errors[0]["json"]["errors"] == ["Not logged in"]


async def test_a_worker_session_on_a_revoked_worker_token_ends(
    cluster: Cluster, auth: Auth
) -> None:
    """A worker's one session carries all of its tasks: revoking its token ends it."""
    await cluster.jobs.CreateJob(JOB)
    uuid, token = await auth.mint(WORKER_SCOPES, admin=True)
    stubs = auth.stubs(token)
    call = stubs.tasks.WorkerSession(metadata=token_md(token))
    info = TSP.WorkerInfo(worker_id="w1", node_name="node1", free_slots=1)
    await call.write(TSP.WorkerSessionRequest(open=info))
    async with asyncio.timeout(30):
        while not (response := await call.read()).assignments:
            assert response is not grpc.aio.EOF  # type: ignore[attr-defined]
    assert len(response.assignments) == 1
    await revoke_token(auth.core.db, uuid)
    try:
        async with asyncio.timeout(30):  # without the re-check, the session stays open
            while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
                pass
        ended = (grpc.StatusCode.OK, "")
    except grpc.aio.AioRpcError as err:
        ended = (err.code(), err.details() or "")
    assert ended == (grpc.StatusCode.UNAUTHENTICATED, "Not logged in")
