"""Every gRPC call has a request id: the caller's `x-request-id` metadata if it sent a valid
one, else one the service makes in the gateway's form. Its access line carries the id, and
the call's trailing metadata returns it (as the gateway returns X-Request-Id)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from jobtask.observability.logs import ACCESS, CALLER_KEY, JsonFormatter
from jobtask.v1 import job_service_pb2, job_service_pb2_grpc

from tests.conftest import Cluster, running_cluster, token_channel
from tests.polling import eventually

MINTED = re.compile(r"req-[0-9a-z]{20}")
LIST_JOBS = "/jobtask.v1.JobService/ListJobs"
GET_JOB = "/jobtask.v1.JobService/GetJob"


class _Lines(logging.Handler):
    """The access lines as the services' JSON log writes them (formatted as they are logged,
    in the call's context, where its request id is set)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def access_lines() -> Iterator[list[dict[str, Any]]]:
    handler = _Lines()
    level = ACCESS.level
    ACCESS.addHandler(handler)
    ACCESS.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        ACCESS.removeHandler(handler)
        ACCESS.setLevel(level)


@pytest.fixture
async def live(sqlite_url: str) -> AsyncIterator[Cluster]:
    async with running_cluster(sqlite_url) as c:
        yield c


async def _line(lines: list[dict[str, Any]], method: str) -> dict[str, Any]:
    """The call's one access line. Written as the call ends on the server, which may be
    after its status reached the client (both on this event loop): a refused call's line
    came a moment after the client's error once in a CI run."""

    def found() -> list[dict[str, Any]]:
        return [line for line in lines if line["method"] == method]

    (line,) = await eventually(found, within=10)
    found_line: dict[str, Any] = line
    return found_line


async def test_a_request_id_sent_is_kept_and_returned(
    live: Cluster, access_lines: list[dict[str, Any]]
) -> None:
    call = live.jobs.ListJobs(
        job_service_pb2.ListJobsRequest(), metadata=(("x-request-id", "req-sent-by-me"),)
    )
    await call
    trailers = dict(await call.trailing_metadata())
    assert trailers["x-request-id"] == "req-sent-by-me"
    assert trailers[CALLER_KEY].endswith("-tpzed-000000000000001")  # (still there)
    assert (await _line(access_lines, LIST_JOBS))["request_id"] == "req-sent-by-me"


async def test_a_missing_request_id_is_made_logged_and_returned(
    live: Cluster, access_lines: list[dict[str, Any]]
) -> None:
    call = live.jobs.ListJobs(job_service_pb2.ListJobsRequest())
    await call
    made = dict(await call.trailing_metadata())["x-request-id"]
    assert MINTED.fullmatch(made), made
    assert (await _line(access_lines, LIST_JOBS))["request_id"] == made


@pytest.mark.parametrize("token", ["admin", None], ids=["not-found", "unauthenticated"])
async def test_a_failed_call_returns_its_request_id_too(
    live: Cluster, access_lines: list[dict[str, Any]], token: str | None
) -> None:
    """A call refused by the service, or by the auth interceptor before any handler."""
    channel = token_channel(live.jobs_addr, live.admin_token if token else None)
    try:
        stub: Any = job_service_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.GetJob(job_service_pb2.GetJobRequest(uuid="zzzzz-8i9sb-000000000000000"))
    finally:
        await channel.close(None)
    expected = grpc.StatusCode.NOT_FOUND if token else grpc.StatusCode.UNAUTHENTICATED
    assert failed.value.code() == expected
    trailers: Any = failed.value.trailing_metadata() or ()
    made = dict(trailers)["x-request-id"]
    assert MINTED.fullmatch(made), made
    line = await _line(access_lines, GET_JOB)
    assert (line["code"], line["request_id"]) == (expected.name, made)


async def test_an_invalid_request_id_is_replaced(
    live: Cluster, access_lines: list[dict[str, Any]]
) -> None:
    call = live.jobs.ListJobs(
        job_service_pb2.ListJobsRequest(), metadata=(("x-request-id", "x" * 1025),)
    )
    await call
    made = dict(await call.trailing_metadata())["x-request-id"]
    assert MINTED.fullmatch(made), made
    assert (await _line(access_lines, LIST_JOBS))["request_id"] == made
