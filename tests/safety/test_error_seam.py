"""The error seam: an exception nobody translated is logged with an error id and answered
INTERNAL (gRPC) or 500 (gateway) carrying only that id, never the exception's text."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from jobtask.gateway import serve_gateway
from jobtask.server.errors import INTERRUPTED, rpc
from jobtask.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, watch_pb2

SECRET_TEXT = "s3cret-internal-detail"
UUID = "zzzzz-8i9sb-000000000000000"


class Broken(job_service_pb2_grpc.JobServiceServicer):
    """A real servicer whose methods fail the way a bug would."""

    @rpc
    async def GetJob(self, request: Any, context: Any) -> job_pb2.Job:
        raise RuntimeError(SECRET_TEXT)

    @rpc
    async def WatchJob(self, request: Any, context: Any) -> AsyncIterator[watch_pb2.WatchEvent]:
        yield watch_pb2.WatchEvent()
        raise KeyError(SECRET_TEXT)


@pytest.fixture
async def broken() -> AsyncIterator[str]:
    server = grpc.aio.server()
    job_service_pb2_grpc.add_JobServiceServicer_to_server(Broken(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0.5)


def logged_ids(caplog: pytest.LogCaptureFixture) -> list[str]:
    ids = []
    for record in caplog.records:
        found = re.search(r"error id ([0-9a-f]+)", record.getMessage())
        if found and record.exc_info is not None:
            ids.append(found.group(1))
    return ids


async def test_grpc_unary_and_stream_answer_internal_with_an_id(
    broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="jobtask.server.errors")
    async with grpc.aio.insecure_channel(broken) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetJob(job_service_pb2.GetJobRequest(uuid=UUID))
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        details = raised.value.details() or ""
        assert SECRET_TEXT not in details
        first = re.search(r"error id ([0-9a-f]+)", details)
        assert first is not None
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in stub.WatchJob(job_service_pb2.WatchJobRequest(uuid=UUID)):
                pass
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        assert SECRET_TEXT not in (raised.value.details() or "")
    # Both were logged with their traceback under the id the caller was given.
    assert first.group(1) in logged_ids(caplog)
    assert len(logged_ids(caplog)) == 2
    assert any(SECRET_TEXT in (r.exc_text or "") for r in caplog.records)


async def test_gateway_answers_500_with_the_id_and_no_text(broken: str) -> None:
    gateway = await serve_gateway("127.0.0.1:0", broken, broken)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=20) as client:
            answer = await client.get(f"/arvados/v1/jobs/{UUID}")
    finally:
        await gateway.stop()
    assert answer.status_code == 500
    assert SECRET_TEXT not in answer.text
    body = answer.json()
    assert re.search(r"error id [0-9a-f]+", body["errors"][0]), body
    assert body["error_token"]


async def _canceled_by_another_task() -> None:
    """Awaits a future that another task cancels: a CancelledError the caller's own task
    was not asked for (a shared committer canceled under its waiters, say)."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.cancel)
    await future


class Interrupted(job_service_pb2_grpc.JobServiceServicer):
    """A real servicer whose methods are interrupted by a canceled future, or wait until
    their call is canceled."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()

    @rpc
    async def GetJob(self, request: Any, context: Any) -> job_pb2.Job:
        await _canceled_by_another_task()
        return job_pb2.Job()

    @rpc
    async def WatchJob(self, request: Any, context: Any) -> AsyncIterator[watch_pb2.WatchEvent]:
        yield watch_pb2.WatchEvent()
        await _canceled_by_another_task()

    @rpc
    async def ListJobs(self, request: Any, context: Any) -> job_service_pb2.ListJobsResponse:
        try:
            await asyncio.Event().wait()  # until the call itself is canceled
        finally:
            self.ended.set()
        return job_service_pb2.ListJobsResponse()


async def test_a_call_interrupted_by_a_task_it_did_not_cancel_answers_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Left to grpc.aio, a CancelledError the handler's task was not asked for passes for the
    call's own cancel, and the call is never answered. It answers UNAVAILABLE (retryable),
    unary and streaming alike; a call its client cancels still ends as before, unlogged."""
    caplog.set_level(logging.WARNING, logger="jobtask.server.errors")
    servicer = Interrupted()
    server = grpc.aio.server()
    job_service_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.GetJob(job_service_pb2.GetJobRequest(uuid=UUID), timeout=20)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert raised.value.details() == INTERRUPTED
            seen = []
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                call = stub.WatchJob(job_service_pb2.WatchJobRequest(uuid=UUID), timeout=20)
                async for event in call:
                    seen.append(event)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert len(seen) == 1
            assert len(caplog.records) == 2
            # The client's own cancel (its deadline) is the call's: not translated.
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.ListJobs(job_service_pb2.ListJobsRequest(), timeout=0.5)
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            await asyncio.wait_for(servicer.ended.wait(), 20)
    finally:
        await server.stop(0.5)
    # (Read once the server stopped: every handler has ended.)
    assert len(caplog.records) == 2, [r.getMessage() for r in caplog.records]
