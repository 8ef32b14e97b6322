"""A server slow to answer a new connection's handshake (an overloaded machine) still gets the
SDK's calls: the connection attempt is given seconds, not gRPC's 200 ms floor the SDK once set.

The slowness is a TCP proxy on loopback that accepts at once but forwards nothing for
HANDSHAKE_DELAY seconds, in front of the real servers."""

from __future__ import annotations

import asyncio

from jobtask.sdk import AsyncClient, Client, NotFoundError
from jobtask.sdk.transport import CONNECT_TIMEOUT_MS

from tests.clients.conftest import ROOT_TOKEN
from tests.conftest import Cluster

# Longer than the 200 ms the SDK once allowed a connection attempt, well inside its timeout.
HANDSHAKE_DELAY = 1.0
MISSING_JOB = "zzzzz-8i9sb-000000000000000"


class SlowHandshakeProxy:
    """Forwards each connection to `target_port` once HANDSHAKE_DELAY has passed."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0

    async def __aenter__(self) -> SlowHandshakeProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await asyncio.sleep(HANDSHAKE_DELAY)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()


def test_the_connect_timeout_outlasts_the_slow_handshake() -> None:
    assert CONNECT_TIMEOUT_MS / 1000 > 2 * HANDSHAKE_DELAY


async def test_async_calls_wait_out_a_slow_handshake(live: Cluster) -> None:
    async with SlowHandshakeProxy(live.services.jobs_port) as proxy:
        addr = f"127.0.0.1:{proxy.port}"
        async with AsyncClient.connect(addr, live.tasks_addr, ROOT_TOKEN, timeout=30) as client:
            job = await client.submit("hash.py", {"slow": 1})
            assert (await client.get(job.uuid)).uuid == job.uuid
        # One connection, made once: the first call did not fail over to a second attempt.
        assert proxy.connections == 1


async def test_sync_calls_wait_out_a_slow_handshake(live: Cluster) -> None:
    async with SlowHandshakeProxy(live.services.jobs_port) as proxy:
        addr = f"127.0.0.1:{proxy.port}"

        def call() -> None:
            with Client.connect(addr, live.tasks_addr, ROOT_TOKEN, timeout=30) as client:
                try:
                    client.get(MISSING_JOB)
                except NotFoundError:
                    return  # the server answered
                raise AssertionError("a job that does not exist was found")

        await asyncio.to_thread(call)
        assert proxy.connections == 1
