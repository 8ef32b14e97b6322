"""A silent network partition between a worker and TaskService: the worker stops the task's
process by its own clock before the server reaps the lease and the task can run elsewhere.

The partition is a TCP proxy on loopback that, once frozen, keeps every connection open but
forwards nothing (packets dropped, as a partition does), between a real worker process and
the real TaskService."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jobtask.sdk import AsyncClient
from jobtask.v1 import job_task_pb2, task_service_pb2

from tests.clients.conftest import Workers
from tests.conftest import Cluster
from tests.processes import alive


class FreezableProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        try:
            await asyncio.gather(*pumps)
        except Exception:
            pass
        finally:
            for w in (writer, up_writer):
                w.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while True:
            data = await src.read(65536)
            if not data:
                return
            if self.frozen.is_set():
                continue  # dropped: the connection stays open, nothing arrives
            dst.write(data)
            await dst.drain()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_partitioned_worker_kills_its_task_before_the_lease_is_reaped(
    live: Cluster, client: AsyncClient, workers: Workers, tmp_path: Path
) -> None:
    proxy = FreezableProxy(live.services.tasks_port)
    await proxy.start()
    pidfile = tmp_path / "pids"
    job = await client.submit("sleeper.py", {"pidfile": str(pidfile)})
    try:
        await workers.start("partitioned", JOBTASK_TASKS_ADDR=f"127.0.0.1:{proxy.port}")
        for _ in range(600):
            if pidfile.exists():
                break
            await asyncio.sleep(0.05)
        script_pid = int(pidfile.read_text().split()[0])
        (task,) = await client.tasks(job.uuid)
        assert task.status == job_task_pb2.TASK_STATUS_ACTIVE
        proxy.frozen.set()
        # Poll the server's view first, then the process: once the server has reaped the
        # lease (the attempt ended: the task is no longer active), the process must be gone.
        events: list[str] = []
        for _ in range(1200):
            got = await live.tasks.GetTask(task_service_pb2.GetTaskRequest(uuid=task.uuid))
            reaped = got.status != job_task_pb2.TASK_STATUS_ACTIVE or got.failed_count > 0
            running = alive(script_pid)
            if not running and "stopped" not in events:
                events.append("stopped")
            if reaped:
                events.append("reaped")
                break
            await asyncio.sleep(0.05)
        assert events == ["stopped", "reaped"], events
    finally:
        await proxy.close()
