"""A write transaction whose PostgreSQL session the server ended before the commit runs
again on a new connection instead of failing its caller (the chaos cell pg_backend_kill:
the services answered UNAVAILABLE, logging asyncpg's "cannot switch to state 15; another
operation (2) is in progress", and the workers' sessions broke).

pg_terminate_backend makes the server send an error (FATAL 57P01) and then close the socket.
A connection that sits idle between two statements of a transaction reads the error and
waits for a ReadyForQuery that never comes (asyncpg's protocol state 2, consuming an error);
until it has also read the socket's close, its next statement fails with that message rather
than "connection is closed". Either way nothing of the transaction was written. The proxy
below holds the client's socket open after the server closed its end, which holds that window
open for the test (a slow FIN, or a pooler in between, does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest
from jobtask.store.database import Database
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.core.raw_rows import connect
from tests.polling import DEADLINE, eventually

pytestmark = pytest.mark.postgres


class HoldingProxy:
    """A TCP proxy to PostgreSQL that forwards both ways, but when the server closes its
    end, keeps the client's end open (until the proxy stops)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.server: asyncio.Server | None = None
        self.server_closed = 0  # server ends that closed
        self.held: list[asyncio.StreamWriter] = []  # both ends of every connection
        self.pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.held += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            if down:
                self.server_closed += 1  # and the client's end stays open
            else:
                dst.close()

        for task in (pump(reader, up_writer, False), pump(up_reader, writer, True)):
            running = asyncio.create_task(task)
            self.pumps.add(running)
            running.add_done_callback(self.pumps.discard)

    async def stop(self) -> None:
        for task in list(self.pumps):
            task.cancel()
        for writer in self.held:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_transaction_whose_session_was_killed_runs_again(postgres_url: str) -> None:
    async def count(conn: AsyncConnection) -> int:
        return int((await conn.execute(text("SELECT count(*) FROM marks"))).scalar_one())

    await killed_between_statements(postgres_url, count)


async def killed_between_statements(
    postgres_url: str, count: Callable[[AsyncConnection], Awaitable[int]]
) -> None:
    """A write transaction whose session is ended after its INSERT, before `count` (its
    next statement, counting the table's rows) runs again, once, on a new connection: the
    first run's insert died with its session."""
    url = make_url(postgres_url)
    proxy = HoldingProxy(url.host or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    db = Database(url.set(port=port).render_as_string(hide_password=False))
    admin = await connect(postgres_url)
    await admin.execute("CREATE TABLE marks (run integer NOT NULL, pid integer NOT NULL)")
    runs: list[int] = []

    async def write(conn: AsyncConnection) -> int:
        runs.append(len(runs) + 1)
        pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        await conn.execute(
            text("INSERT INTO marks (run, pid) VALUES (:run, :pid)"), {"run": runs[-1], "pid": pid}
        )
        if len(runs) == 1:
            # The session is ended between two statements, as pg_backend_kill does.
            closed = proxy.server_closed
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            await eventually(lambda: proxy.server_closed > closed)
            await asyncio.sleep(0.2)  # the client has read the server's last message
        return await count(conn)

    try:
        assert await db.transact(write) == 1
        assert runs == [1, 2]
        rows = await admin.fetch("SELECT run, pid FROM marks")
        assert [r["run"] for r in rows] == [2]  # the first run's insert died with its session
    finally:
        await admin.close()
        await proxy.stop()  # first: a connection closing waits for its socket to close
        await asyncio.wait_for(db.dispose(), DEADLINE)


async def test_a_pooled_connection_whose_session_was_killed_is_replaced(postgres_url: str) -> None:
    """No ping before each use (three round trips with SQLAlchemy's asyncpg dialect): a
    pooled connection whose session the server ended is replaced when it is next taken,
    because its socket closed, and a read on it does not fail."""
    db = Database(postgres_url, pool_size=1, max_overflow=0)
    admin = await connect(postgres_url)
    pid_sql = text("SELECT pg_backend_pid()")
    try:
        async with db.read() as conn:
            first = int((await conn.execute(pid_sql)).scalar_one())
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)

        async def gone() -> bool:
            sessions = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
            return int(await admin.fetchval(sessions, first)) == 0

        await eventually(gone)
        await asyncio.sleep(0.2)  # the pooled connection has read its socket's close
        async with db.read() as conn:
            second = int((await conn.execute(pid_sql)).scalar_one())
        assert second != first
    finally:
        await admin.close()
        await asyncio.wait_for(db.dispose(), DEADLINE)
