"""The gateway as a process part: configured from JOBTASK_* variables, stopped by cancelling."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import httpx
import pytest
from jobtask.gateway import run_gateway_from_env
from jobtask.server.app import serve_all

from tests.gateway.conftest import ROOT_AUTH, ROOT_TOKEN


async def test_run_gateway_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    services = await serve_all(f"sqlite:///{tmp_path / 'db.sqlite3'}", root_token=ROOT_TOKEN)
    monkeypatch.setenv("JOBTASK_GATEWAY_LISTEN", "127.0.0.1:0")
    monkeypatch.setenv("JOBTASK_JOBS_ADDR", f"127.0.0.1:{services.jobs_port}")
    monkeypatch.setenv("JOBTASK_TASKS_ADDR", f"127.0.0.1:{services.tasks_port}")
    monkeypatch.setenv("JOBTASK_CLUSTER_ID", "abcde")
    monkeypatch.delenv("JOBTASK_TLS_CERT", raising=False)
    monkeypatch.delenv("JOBTASK_TLS_KEY", raising=False)
    caplog.set_level(logging.INFO, logger="jobtask.gateway.server")
    task = asyncio.create_task(run_gateway_from_env())
    try:
        async with asyncio.timeout(10):
            while not (found := re.search(r"listening on (http://\S+)", caplog.text)):
                assert not task.done(), task
                await asyncio.sleep(0.02)
        url = found.group(1)
        async with httpx.AsyncClient(base_url=url, headers=ROOT_AUTH) as client:
            size = await client.get("/arvados/v1/jobs/queue_size")
            assert size.status_code == 200 and size.json() == {"queue_size": 0}
            discovery = (await client.get("/discovery/v1/apis/arvados/v1/rest")).json()
            assert discovery["uuidPrefix"] == "abcde"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await services.stop(0.5)
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{url}/arvados/v1/jobs/queue_size")


def test_public_surface() -> None:
    import jobtask.gateway

    assert sorted(jobtask.gateway.__all__) == [
        "GatewayServer",
        "create_app",
        "run_gateway_from_env",
        "serve_gateway",
    ]
