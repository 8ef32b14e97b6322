"""Half-open HTTP requests cannot stop `jobtask up` (issue 13, item 3).

A real `jobtask up` runs with RLIMIT_NOFILE lowered to 256, and the test opens more
connections to its gateway than that, each sending a partial request header and then
waiting. The gateway holds at most half the limit and closes the rest at once; the header
timeout closes the ones it holds; JobService and TaskService keep answering throughout; and
the process logs a handful of lines about it, not one per connection or accept."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import start_jobtask

ROOT_TOKEN = "jobtask-test-root-token"
NOFILE = 256
HALF_OPEN = 320  # more than the process's whole descriptor limit
PARTIAL = b"GET / HTTP/1.1\r\nHost: x\r\n"

pytestmark = pytest.mark.slow


def _lower_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


async def _health(addr: str, service: str) -> int:
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        return int(response.status)


async def _half_open(
    host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        writer.write(PARTIAL)
        await writer.drain()
    except (OSError, TimeoutError):
        return None  # refused or reset at once: as good as closed
    return reader, writer


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closed the connection (EOF or reset), reading what it sent."""
    try:
        while await asyncio.wait_for(reader.read(4096), 60):
            pass
    except (ConnectionError, OSError):
        pass
    except TimeoutError:
        return False
    return True


async def test_half_open_flood_leaves_services_answering(tmp_path: Path) -> None:
    log_path = tmp_path / "up.log"
    env = {
        **os.environ,
        "JOBTASK_DATABASE_URL": str(tmp_path / "jobtask.sqlite3"),
        "JOBTASK_SYSTEM_ROOT_TOKEN": ROOT_TOKEN,
        "JOBTASK_GATEWAY_HEADER_TIMEOUT": "6",
        "PYTHONUNBUFFERED": "1",
    }
    listen = ("--jobs-listen", "127.0.0.1:0", "--tasks-listen", "127.0.0.1:0")
    with log_path.open("wb") as log:
        proc = await start_jobtask(
            "up",
            *listen,
            "--gateway-listen",
            "127.0.0.1:0",
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=tmp_path,
            preexec_fn=_lower_nofile,
        )
    assert proc.stdout is not None
    banner: dict[str, str] = {}
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            if line.startswith("press Ctrl-C"):
                break
            assert line, f"jobtask up exited: {banner}"
            label, _, value = line.partition(":")
            banner[label] = value.strip()
        jobs, tasks, gateway = banner["JobService"], banner["TaskService"], banner["gateway"]
        host, _, port = gateway.removeprefix("http://").rpartition(":")

        opened = await asyncio.gather(*(_half_open(host, int(port)) for _ in range(HALF_OPEN)))
        conns = [c for c in opened if c is not None]

        # While the gateway is flooded, the gRPC services in the same process answer.
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await _health(jobs, "jobtask.v1.JobService") == serving
        assert await _health(tasks, "jobtask.v1.TaskService") == serving

        # Every half-open connection is closed by the server: at once past the limit, after
        # the header timeout for those it held.
        closed = await asyncio.gather(*(_closed_by_server(r) for r, _ in conns))
        assert all(closed), f"{closed.count(False)} half-open connections still open"

        # And then REST answers a fresh request.
        async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
            got = await http.get(
                "/arvados/v1/jobs/queue_size", headers={"Authorization": f"OAuth2 {ROOT_TOKEN}"}
            )
        assert got.status_code == 200, got.text
        assert await _health(jobs, "jobtask.v1.JobService") == serving
    finally:
        for _, writer in conns:
            writer.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    lines = log_path.read_text(errors="replace").splitlines()
    about = [
        line
        for line in lines
        if any(w in line.lower() for w in ("open files", "accept", "connection", "header"))
    ]
    assert len(about) <= 6, f"{len(about)} lines about the flood, e.g. {about[:5]}"
    assert len(lines) < 60, f"{len(lines)} log lines: {lines[:10]}"
