"""Issue 18: the gateway's /healthz (alive) and /readyz (services and database reachable),
against real service processes, then with them gone."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jobtask.server.app import JOB_SERVICE, TASK_SERVICE
from jobtask.server.readiness import STORE_SERVICE
from jobtask.store import migrate
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import running_cluster
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


async def test_the_store_check_fails_once_another_version_migrated_the_schema(
    database_url: str,
) -> None:
    """`jobtask.store` answers NOT_SERVING while the schema is at a revision not the
    server's (a newer jobtask upgraded the database under it), and SERVING again once it is."""
    async with running_cluster(database_url) as cluster:
        db = cluster.services.core.db

        async def stamp(revision: str) -> None:
            async def run(conn: AsyncConnection) -> None:
                await conn.execute(
                    text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
                )

            await db.transact(run)

        async def store(addr: str) -> int:
            async with grpc.aio.insecure_channel(addr) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                check = health_pb2.HealthCheckRequest(service=STORE_SERVICE)
                return int((await stub.Check(check, timeout=10)).status)

        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        head = migrate.head_revision()
        assert head is not None
        assert await store(cluster.jobs_addr) == serving
        await stamp("ffffffffffff")
        assert await store(cluster.jobs_addr) == not_serving
        assert await store(cluster.tasks_addr) == not_serving
        await stamp(head)
        assert await store(cluster.tasks_addr) == serving
