"""Several replicas' addresses in one JOBTASK_TASKS_ADDR (the failover list of the worker,
the SDK and the gateway)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from jobtask.gateway.server import serve_gateway
from jobtask.sdk.transport import channel_target
from jobtask.server.app import serve_all

from tests.gateway.conftest import ROOT_AUTH, ROOT_TOKEN
from tests.polyglot.conftest import free_port


def test_one_address_is_used_as_given() -> None:
    assert channel_target("tasks:50052") == "tasks:50052"
    assert channel_target("127.0.0.1:50052") == "127.0.0.1:50052"


def test_a_list_becomes_a_static_target_in_its_order() -> None:
    assert channel_target("127.0.0.1:2, 127.0.0.1:1") == "ipv4:127.0.0.1:2,127.0.0.1:1"
    assert channel_target("[::1]:2,[::1]:1") == "ipv6:[::1]:2,[::1]:1"


@pytest.mark.parametrize("addr", ["tasks-1:50052,tasks-2:50052", "127.0.0.1:1,[::1]:2"])
def test_names_and_mixed_families_are_refused(addr: str) -> None:
    with pytest.raises(ValueError, match="address list"):
        channel_target(addr)


async def test_the_gateway_fails_over_along_a_list(tmp_path: Path) -> None:
    """The gateway reads JOBTASK_JOBS_ADDR/JOBTASK_TASKS_ADDR as the SDK does: a list of
    replicas whose first one is down still serves."""
    services = await serve_all(f"sqlite:///{tmp_path / 'db.sqlite3'}", root_token=ROOT_TOKEN)
    dead = f"127.0.0.1:{free_port()}"
    try:
        gateway = await serve_gateway(
            "127.0.0.1:0",
            f"{dead},127.0.0.1:{services.jobs_port}",
            f"{dead},127.0.0.1:{services.tasks_port}",
        )
        try:
            async with httpx.AsyncClient(base_url=gateway.url, headers=ROOT_AUTH) as http:
                for path in ("/arvados/v1/jobs", "/arvados/v1/job_tasks"):
                    got = await http.get(path)
                    assert got.status_code == 200, (path, got.text)
        finally:
            await gateway.stop()
        with pytest.raises(ValueError, match="address list"):
            await serve_gateway("127.0.0.1:0", "jobs-1:1,jobs-2:1", dead)
    finally:
        await services.stop(0.5)
