"""Request bodies are limited to discovery's maxRequestSize (the services' gRPC message limit):
a larger one is refused with 413 and Arvados's error body, whether it says its length or
streams in chunks, and the gateway keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator

from jobtask.gateway.discovery import MAX_REQUEST_SIZE
from jobtask.server.app import MAX_MESSAGE_BYTES

from tests.gateway.conftest import Stack


def test_the_advertised_limit_is_what_the_services_accept() -> None:
    assert MAX_REQUEST_SIZE == MAX_MESSAGE_BYTES


async def test_a_body_over_the_limit_is_refused(stack: Stack) -> None:
    discovery = (await stack.client.get("/discovery/v1/apis/arvados/v1/rest")).json()
    assert discovery["maxRequestSize"] == MAX_REQUEST_SIZE
    big = b"x" * (MAX_REQUEST_SIZE + 1)
    sized = await stack.client.post(
        "/arvados/v1/jobs", content=big, headers={"content-type": "application/json"}
    )
    assert sized.status_code == 413, sized.text
    assert str(MAX_REQUEST_SIZE) in sized.json()["errors"][0]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_REQUEST_SIZE // 65536 + 2):
            yield b" " * 65536

    streamed = await stack.client.post(
        "/arvados/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413, streamed.text
    created = await stack.client.post("/arvados/v1/jobs", json={"job": {"script": "hash.py"}})
    assert created.status_code == 200, created.text
