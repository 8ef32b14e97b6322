"""SQLite statements run in the event loop's own thread, without a hop per statement.

Why not aiosqlite: it runs each statement in a worker thread and resumes the caller through
the event loop, so every statement waits for a turn of a loop that is busy serving streams.
A task completion is about ten statements, all while holding the process's single SQLite
write turn: measured in bench/ (throughput, SQLite), that wait -- not SQLite -- bounded the
whole process at about 80 completed tasks/s. SQLite itself answers these statements in
microseconds, and in WAL mode a reader never waits for a writer, and a writer that holds the
write lock (BEGIN IMMEDIATE) never waits for anyone. The one wait left is BEGIN IMMEDIATE
itself when another process is writing: `begin_immediate` retries it with asyncio.sleep
instead of SQLite's busy handler, which would block the loop.

`InlineConnection` offers the part of AsyncConnection that the store uses (execute,
exec_driver_sql, scalar, run_sync, commit, rollback, dialect, info), over a synchronous
SQLAlchemy Connection.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from jobtask.store import json_codec
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import QueuePool

T = TypeVar("T")
log = logging.getLogger("jobtask.store.database")

# Idle connections kept per engine. Checkouts beyond it open new ones rather than wait: a
# checkout that waited would block the loop, and the connection it waits for could only be
# returned by a coroutine of that same loop.
POOL_SIZE = 8
# A reader waits this long in SQLite's busy handler (it only ever waits for WAL recovery).
READ_BUSY_TIMEOUT_MS = 1_000
_FIRST_RETRY_SECONDS = 0.001
_LAST_RETRY_SECONDS = 0.05
# A writer's commits start a checkpoint in the background at most this often (Checkpoints).
CHECKPOINT_SECONDS = 0.25
# SQLite's own checkpoint at commit, left as a backstop: when the WAL reaches this many
# pages (SQLite's default is 1,000), the committing writer checkpoints it itself.
BACKSTOP_WAL_PAGES = 10_000


class InlineConnection:
    """An AsyncConnection look-alike whose statements run synchronously when awaited."""

    __slots__ = ("_info", "sync_connection")

    def __init__(self, sync_connection: Connection) -> None:
        self.sync_connection = sync_connection
        self._info: dict[Any, Any] | None = None

    @property
    def dialect(self) -> Any:
        return self.sync_connection.dialect

    @property
    def info(self) -> dict[Any, Any]:
        # The pooled DBAPI connection's dict, the same for as long as this object serves one
        # checkout: looked up once (Connection.info goes through three proxies each time,
        # and a claim or completion asks once per task, for its after-commit logs).
        info = self._info
        if info is None:
            info = self._info = self.sync_connection.info
        return info

    async def execute(
        self, statement: Any, parameters: Any = None, **kwargs: Any
    ) -> CursorResult[Any]:
        return self.sync_connection.execute(statement, parameters, **kwargs)

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> CursorResult[Any]:
        return self.sync_connection.exec_driver_sql(statement, parameters)

    async def scalar(self, statement: Any, parameters: Any = None, **kwargs: Any) -> Any:
        return self.sync_connection.scalar(statement, parameters, **kwargs)

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(self.sync_connection, *args, **kwargs)

    async def commit(self) -> None:
        self.sync_connection.commit()

    async def rollback(self) -> None:
        self.sync_connection.rollback()


def as_async(conn: Connection) -> AsyncConnection:
    """The connection as the store's functions take it. They are typed for AsyncConnection
    (the PostgreSQL path) and use only what InlineConnection offers."""
    return cast(AsyncConnection, InlineConnection(conn))


class Checkpoints:
    """The WAL of one database file copied back into it by a thread of its own, not by
    the event loop's: SQLite checkpoints on the commit that fills the WAL past 1,000 pages,
    so one commit in a few hundred copied and synced megabytes while the loop -- the
    server's one core -- waited for it. A commit starts a PASSIVE checkpoint (never waits,
    never makes anyone wait) in this process's checkpoint thread when CHECKPOINT_SECONDS
    have passed since the last and none is running; SQLite's own stays as a backstop
    (BACKSTOP_WAL_PAGES)."""

    _executor: ThreadPoolExecutor | None = None
    _executor_lock = threading.Lock()

    def __init__(self, database: str) -> None:
        # mode=rw: a checkpoint never creates the file (it may be gone: a test's dir).
        self.uri = f"file:{urllib.parse.quote(database)}?mode=rw"
        self.last = 0.0
        self.running = False

    def committed(self) -> None:
        """After a commit, in the loop's thread: a checkpoint if one is due."""
        now = time.monotonic()
        if self.running or now - self.last < CHECKPOINT_SECONDS:
            return
        self.last = now
        self.running = True
        self._pool().submit(self._checkpoint)

    @classmethod
    async def idle(cls) -> None:
        """Returns once every checkpoint started so far has ended (its connection closed):
        the pool has one thread, so a no-op submitted now runs after them."""
        executor = cls._executor
        if executor is None:
            return
        try:
            done = executor.submit(_nothing)
        except RuntimeError:  # shut down (the interpreter is exiting): nothing runs
            return
        await asyncio.wrap_future(done)

    @classmethod
    def _pool(cls) -> ThreadPoolExecutor:
        with cls._executor_lock:
            if cls._executor is None:
                cls._executor = ThreadPoolExecutor(1, thread_name_prefix="jobtask-checkpoint")
            return cls._executor

    def _checkpoint(self) -> None:
        try:
            conn = sqlite3.connect(self.uri, uri=True, isolation_level=None)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            # The backstop checkpoints meanwhile; the next commit tries again.
            log.debug("background checkpoint failed: %s", type(exc).__name__)
        finally:
            self.running = False


def _nothing() -> None:
    """What Checkpoints.idle waits for."""


# None's adapter in the sqlite3 module's registry: `{}.get`, which answers None for None in
# C, so None is bound as NULL just as without one. Without an adapter for its type, the module
# looks each None parameter up as `PrepareProtocol.__adapt__` on a type, a miss that formats
# an AttributeError (~2,000 instructions, ~1 us here) before binding NULL anyway: ~28 a
# one-task job drained (a completion's cleared lease, the rows' empty columns).
_NONE_ADAPTER: dict[None, None] = {}
# Likewise a blob: SQLAlchemy binds bytes as memoryview (the sqlite3 module's Binary), which
# the module adapts before binding it as a blob -- a miss, as for None, one a task claimed
# (its token's digest). `bytes` answers in C with what the module binds as the same blob.


def engine(database: str, *, writer: bool, echo: bool) -> Engine:
    """A pool of connections to one SQLite file, for the loop's thread. Writers fail at once
    when another process holds the write lock (begin_immediate waits without blocking)."""
    # (Process-wide, as the registry is; registering it again replaces it with itself.)
    sqlite3.register_adapter(type(None), _NONE_ADAPTER.get)
    sqlite3.register_adapter(memoryview, bytes)
    created = create_engine(
        f"sqlite+pysqlite:///{database}",
        echo=echo,
        poolclass=QueuePool,
        pool_size=POOL_SIZE,
        max_overflow=-1,
        # Pooled connections are used by whichever thread runs the loop (tests run one loop
        # per thread); a connection is only ever used by one coroutine at a time.
        connect_args={"check_same_thread": False},
        json_serializer=json_codec.dumps,
        json_deserializer=json_codec.loads,
    )
    busy_timeout = 0 if writer else READ_BUSY_TIMEOUT_MS
    checkpoints = Checkpoints(database) if writer and database not in ("", ":memory:") else None
    if checkpoints is not None:
        event.listen(created, "commit", lambda _conn: checkpoints.committed())

    @event.listens_for(created, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # SQLAlchemy's transaction calls emit no BEGIN of their own (pysqlite's implicit BEGIN
        # is off): readers begin below, writers in begin_immediate.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Arvados's `like` is PostgreSQL's: case-sensitive (`ilike` is not).
        cursor.execute("PRAGMA case_sensitive_like=ON")
        if writer and checkpoints is not None:
            cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_WAL_PAGES}")
        cursor.close()

    if not writer:

        @event.listens_for(created, "begin")
        def on_begin(conn: Connection) -> None:
            # A read transaction: its statements share one snapshot.
            conn.exec_driver_sql("BEGIN")

    return created


async def begin_immediate(conn: Connection, *, timeout_ms: int) -> None:
    """Starts conn's write transaction (BEGIN IMMEDIATE: the write lock up front, so two
    writers never deadlock upgrading a read lock). While another process holds the lock,
    retries with growing sleeps for up to timeout_ms, then raises the OperationalError."""
    deadline = time.monotonic() + timeout_ms / 1000
    delay = _FIRST_RETRY_SECONDS
    while True:
        conn.begin()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            conn.rollback()
            if "locked" not in str(exc.orig).lower() or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, _LAST_RETRY_SECONDS)
