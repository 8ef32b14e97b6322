"""The database briefly unreachable: calls fail with UNAVAILABLE (HTTP 503 with Retry-After
through the gateway), and the same processes recover once it is back: no restart.

Two outages, neither stopping the shared PostgreSQL server:
- `refused`: the database stops taking connections (ALLOW_CONNECTIONS false) and the
  services' sessions are terminated (pg_terminate_backend), as in a failover or restart;
- `network`: the services reach PostgreSQL through a TCP proxy that the test cuts (every
  connection reset, new ones refused), as in a network partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import grpc
import httpx
import pytest
from jobtask.v1 import (
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    job_task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
    watch_pb2,
)
from sqlalchemy.engine import make_url

from tests.conftest import _asyncpg_dsn, postgres_admin_url, token_channel
from tests.scale.conftest import ROOT_TOKEN, Topology

pytestmark = pytest.mark.postgres

RECOVERY_SECONDS = 15.0


class Proxy:
    """A TCP forwarder on 127.0.0.1 that can be cut and restored on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listen_port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)
        self.listen_port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Resets every connection and refuses new ones (until start())."""
        server, self.server = self.server, None
        for writer in list(self.writers):
            writer.transport.abort()
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self.writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()


class Outage:
    """Makes the services' database unreachable and brings it back."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url  # the database, directly
        self.name = make_url(url).database
        parsed = make_url(url)
        self.proxy = Proxy(parsed.host or "127.0.0.1", parsed.port or 5432)

    async def start(self) -> str:
        """The URL the services are given."""
        if self.kind == "refused":
            return self.url
        await self.proxy.start()
        return (
            make_url(self.url)
            .set(host="127.0.0.1", port=self.proxy.listen_port)
            .render_as_string(hide_password=False)
        )

    async def close(self) -> None:
        await self.proxy.cut()

    async def begin(self) -> None:
        if self.kind == "network":
            await self.proxy.cut()
            return
        admin = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url(), "postgres"))
        try:
            await admin.execute(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS false")
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                self.name,
            )
        finally:
            await admin.close()

    async def end(self) -> None:
        if self.kind == "network":
            await self.proxy.start()
            return
        admin = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url(), "postgres"))
        try:
            await admin.execute(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS true")
        finally:
            await admin.close()


@pytest.fixture(params=["refused", "network"])
async def outage(request: pytest.FixtureRequest, postgres_url: str) -> AsyncIterator[Outage]:
    o = Outage(request.param, postgres_url)
    try:
        yield o
    finally:
        if o.kind == "refused":
            with contextlib.suppress(Exception):
                await o.end()  # the database must be droppable
        await o.close()


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_clients_get_unavailable_and_the_services_recover(
    outage: Outage, tmp_path: Any
) -> None:
    topology = Topology(await outage.start(), tmp_path)
    try:
        jobs, tasks = await asyncio.gather(
            topology.serve("jobs", "jobs0"), topology.serve("tasks", "tasks0")
        )
        gateway = await topology.gateway(jobs.addr, tasks.addr)
        channel = token_channel(jobs.addr, ROOT_TOKEN)
        stub: Any = job_service_pb2_grpc.JobServiceStub(channel)
        http = httpx.AsyncClient(
            base_url=f"http://{gateway.addr}", headers={"Authorization": f"OAuth2 {ROOT_TOKEN}"}
        )
        try:
            job = await stub.CreateJob(
                job_service_pb2.CreateJobRequest(
                    job=job_pb2.Job(script="sleeper.py", script_version="1")
                )
            )
            assert (await http.get("/arvados/v1/jobs")).status_code == 200

            await outage.begin()
            get = job_service_pb2.GetJobRequest(uuid=job.uuid)
            assert await code_of(stub.GetJob(get, timeout=30)) == grpc.StatusCode.UNAVAILABLE
            listed = job_service_pb2.ListJobsRequest()
            assert await code_of(stub.ListJobs(listed, timeout=30)) == grpc.StatusCode.UNAVAILABLE
            cancel = job_service_pb2.CancelJobRequest(uuid=job.uuid)
            assert await code_of(stub.CancelJob(cancel, timeout=30)) == grpc.StatusCode.UNAVAILABLE
            response = await http.get(f"/arvados/v1/jobs/{job.uuid}", timeout=30)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            assert response.json()["errors"], response.text

            await outage.end()
            deadline = time.monotonic() + RECOVERY_SECONDS
            while await code_of(stub.GetJob(get, timeout=30)) != grpc.StatusCode.OK:
                assert time.monotonic() < deadline, "JobService did not recover"
                await asyncio.sleep(0.2)
            while (await http.get(f"/arvados/v1/jobs/{job.uuid}", timeout=30)).status_code != 200:
                assert time.monotonic() < deadline, "the gateway did not recover"
                await asyncio.sleep(0.2)
            await hears_other_processes(stub, jobs.addr, tasks.addr, job.uuid)
        finally:
            await http.aclose()
            await channel.close(None)
        for part in (jobs, tasks, gateway):
            assert part.running, part.log()
            assert "internal error" not in part.log().lower(), part.log()
    finally:
        await topology.stop_all()


async def hears_other_processes(stub: Any, jobs_addr: str, tasks_addr: str, job_uuid: str) -> None:
    """The JobService's LISTEN connection is back: a watcher there sees commits made through
    the TaskService process within a second, not at its 5-second safety poll."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    channel = token_channel(tasks_addr, ROOT_TOKEN)
    try:
        tasks: Any = task_service_pb2_grpc.TaskServiceStub(channel)
        call = stub.WatchJob(job_service_pb2.WatchJobRequest(uuid=job_uuid), timeout=60)
        events = aiter(call)
        while (await anext(events)).type == watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT:
            pass
        latencies: list[float] = []
        while len(latencies) < 3:
            assert time.monotonic() < deadline, f"LISTEN did not come back: {latencies}"
            created = time.monotonic()
            await tasks.CreateTask(
                task_service_pb2.CreateTaskRequest(
                    job_task=job_task_pb2.JobTask(job_uuid=job_uuid, sequence=5)
                )
            )
            while True:
                event = await asyncio.wait_for(anext(events), 10)
                if event.type == watch_pb2.WATCH_EVENT_TYPE_TASK_CREATED:
                    break
            latency = time.monotonic() - created
            latencies = [*latencies, latency] if latency < 1.0 else []
        call.cancel()
    finally:
        await channel.close(None)
