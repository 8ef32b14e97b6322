"""Issue 18: the gateway's /healthz (alive) and /readyz (services and database reachable),
against real service processes, then with them gone."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from jobtask.server.app import JOB_SERVICE, TASK_SERVICE

from tests.scale.conftest import Topology

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_readyz_follows_the_services(sqlite_topology: Topology) -> None:
    topology = sqlite_topology
    jobs, tasks = await asyncio.gather(
        topology.serve("jobs", "jobs"), topology.serve("tasks", "tasks")
    )
    gateway = await topology.gateway(jobs.addr, tasks.addr)
    async with httpx.AsyncClient(base_url=f"http://{gateway.addr}", timeout=30) as http:
        alive = await http.get("/healthz")
        assert alive.status_code == 200
        assert alive.json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "ready",
            "checks": {
                JOB_SERVICE: "ok",
                TASK_SERVICE: "ok",
                "database": "ok",
            },
        }

        for part in (jobs, tasks):
            topology.kill(part)
            await part.proc.wait()
        down = await http.get("/readyz")
        assert down.status_code == 503, down.text
        body = down.json()
        assert body["status"] == "unready"
        assert body["checks"][TASK_SERVICE] == "unreachable"
        assert body["checks"]["database"] != "ok"
        # Alive all the same: the gateway process itself is fine.
        assert (await http.get("/healthz")).status_code == 200
