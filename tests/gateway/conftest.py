"""A real gateway in front of real services: serve_all on a SQLite file, uvicorn on port 0."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from jobtask.gateway import GatewayServer, serve_gateway
from jobtask.server.app import Services, serve_all

# The services accept this as the system root token; the test client sends it by default.
ROOT_TOKEN = "gateway-test-root-" + secrets.token_hex(16)
ROOT_AUTH = {"Authorization": f"Bearer {ROOT_TOKEN}"}

JOB = {
    "script": "hash.py",
    "repository": "a/b",
    "script_version": "master",
    "script_parameters": {"input": "x"},
}


@dataclass
class Stack:
    services: Services
    gateway: GatewayServer
    client: httpx.AsyncClient

    async def create_job(self, **attrs: Any) -> dict[str, Any]:
        body = {"job": {**JOB, **attrs}}
        response = await self.client.post("/arvados/v1/jobs", json=body)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job


async def start_stack(tmp_path: Path, **gateway: Any) -> tuple[Services, GatewayServer]:
    services = await serve_all(f"sqlite:///{tmp_path / 'db.sqlite3'}", root_token=ROOT_TOKEN)
    try:
        handle = await serve_gateway(
            "127.0.0.1:0",
            f"127.0.0.1:{services.jobs_port}",
            f"127.0.0.1:{services.tasks_port}",
            **gateway,
        )
    except BaseException:
        await services.stop(0.5)
        raise
    return services, handle


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    services, handle = await start_stack(tmp_path)
    client = httpx.AsyncClient(base_url=handle.url, timeout=20, headers=ROOT_AUTH)
    try:
        yield Stack(services, handle, client)
    finally:
        await client.aclose()
        await handle.stop()
        await services.stop(0.5)
