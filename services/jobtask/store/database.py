"""Connections to the store: SQLite (the embedded default) or PostgreSQL, by URL.

Callers own their unit of work: `await db.transact(fn)` runs `fn(conn)` in one write
transaction (retried when a concurrent writer made it fail), `async with db.read()` gives a
read-only connection. Database errors are translated here, once, into domain errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from jobtask.domain.errors import Aborted, AlreadyExists, DomainError, Unavailable
from jobtask.observability.metrics import DB_TRANSACTION_SECONDS
from jobtask.store import sqlite_inline
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_SQLITE_FILE = "jobtask.sqlite3"
# How long a SQLite writer waits for another process's write transaction.
SQLITE_BUSY_TIMEOUT_MS = 20_000
WRITE_RETRIES = 5
# PostgreSQL connections per process: the pool keeps DEFAULT_POOL_SIZE open and may open as
# many again under load ($JOBTASK_DB_POOL_SIZE, $JOBTASK_DB_MAX_OVERFLOW).
DEFAULT_POOL_SIZE = 10
POOL_TIMEOUT_SECONDS = 30.0  # SQLAlchemy's default, made explicit
# PostgreSQL channel on which every transaction that changed the feed notifies the others.
NOTIFY_CHANNEL = "jobtask_events"
_CHANGED = "jobtask.changed"
_AFTER_COMMIT = "jobtask.after_commit"


def mark_changed(conn: AsyncConnection) -> None:
    """Records that this transaction changed something watchers or claimers wait for (the
    change feed, the set of live workers): at commit, this process's listeners are called
    and, on PostgreSQL, other processes are notified."""
    conn.info[_CHANGED] = True


def after_commit(conn: AsyncConnection, fn: Callable[[], None]) -> None:
    """Calls fn once this transaction committed (never if it rolls back or is retried):
    for logs and metrics of what it changed."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(fn)


def default_url() -> str:
    return os.environ.get("JOBTASK_DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE_FILE}"


def _env_int(name: str, default: int, *, minimum: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"${name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ValueError(f"${name} must be at least {minimum}")
    return number


def normalize_url(url: str) -> str:
    """Accepts plain `sqlite:///f` and `postgresql://...` and picks the drivers: asyncpg, and
    the standard library's sqlite3 run inline (see jobtask.store.sqlite_inline)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+pysqlite"))
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")


class Database:
    """One store. On SQLite, writes go through one connection at a time per process."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        echo: bool = False,
    ) -> None:
        """PostgreSQL: at most pool_size + max_overflow connections for this process's
        queries ($JOBTASK_DB_POOL_SIZE, $JOBTASK_DB_MAX_OVERFLOW; docs/scaling.md counts
        them against max_connections). A call that waits longer than POOL_TIMEOUT_SECONDS
        for a connection fails with Unavailable."""
        self.url = normalize_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        self._commit_listeners: list[Callable[[], None]] = []
        self._sqlite_write: Engine | None = None
        self._sqlite_read: Engine | None = None
        self._engine: AsyncEngine | None = None
        if self.dialect == "sqlite":
            database = make_url(self.url).database or ""
            self._prepare_sqlite_file(database)
            self._sqlite_write = sqlite_inline.engine(database, writer=True, echo=echo)
            self._sqlite_read = sqlite_inline.engine(database, writer=False, echo=echo)
        else:
            size = _env_int("JOBTASK_DB_POOL_SIZE", DEFAULT_POOL_SIZE, minimum=1)
            size = size if pool_size is None else pool_size
            overflow = _env_int("JOBTASK_DB_MAX_OVERFLOW", size, minimum=0)
            overflow = overflow if max_overflow is None else max_overflow
            self._engine = create_async_engine(
                self.url,
                pool_size=size,
                max_overflow=overflow,
                pool_timeout=POOL_TIMEOUT_SECONDS,
                pool_pre_ping=True,
                echo=echo,
            )

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Calls listener after every write transaction of this process that changed
        something (see mark_changed)."""
        self._commit_listeners.append(listener)

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[None]:
        """Holds this process's SQLite write turn (a no-op on PostgreSQL)."""
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    def pool_usage(self) -> tuple[int, int] | None:
        """PostgreSQL: (connections in use, connections open) of this process's pool."""
        if self._engine is None:
            return None
        pool = self._engine.pool
        checked_out = int(getattr(pool, "checkedout", lambda: 0)())
        return checked_out, checked_out + int(getattr(pool, "checkedin", lambda: 0)())

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @staticmethod
    def _prepare_sqlite_file(database: str) -> None:
        """Creates the file (and its directory) and switches it to WAL; a place it cannot
        write is an OSError saying so in one line (`jobtask up` prints it and exits 1)."""
        if database and database != ":memory:":
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                # Switch a new file to WAL once, before any pooled connection opens it: two
                # processes (or connections) switching a fresh file at once can lock each
                # other out until busy_timeout expires. WAL is a property of the file.
                with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn:
                    conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                    conn.execute("PRAGMA journal_mode=WAL")
            except (OSError, sqlite3.Error) as exc:
                raise OSError(
                    f"cannot write the database at {database}: {_unwritable(database, exc)}"
                ) from None

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        for engine in (self._sqlite_write, self._sqlite_read):
            if engine is not None:
                engine.dispose()

    @asynccontextmanager
    async def _connect(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        """A connection outside any transaction of ours (PostgreSQL: autobegins one)."""
        if self._engine is not None:
            async with self._engine.connect() as conn:
                yield conn
            return
        engine = self._sqlite_write if write else self._sqlite_read
        assert engine is not None
        with engine.connect() as sync_conn:
            yield sqlite_inline.as_async(sync_conn)

    @asynccontextmanager
    async def ddl(self) -> AsyncIterator[AsyncConnection]:
        """A write connection for schema migrations; the caller commits. SQLite: holds this
        process's write turn and the file's write lock from the start."""
        if self._sqlite_write is None:
            async with self._connect(write=True) as conn:
                yield conn
            return
        async with self.writer():
            with self._sqlite_write.connect() as sync_conn:
                await sqlite_inline.begin_immediate(sync_conn, timeout_ms=SQLITE_BUSY_TIMEOUT_MS)
                yield sqlite_inline.as_async(sync_conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._connect(write=False) as conn:
                yield conn
        except DBAPIError as exc:
            raise translate(exc) from exc
        except _UNREACHABLE as exc:
            raise unreachable(exc) from exc

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read connection whose statements all see one snapshot of the database."""
        try:
            async with self._connect(write=False) as conn:
                if not self.is_sqlite:
                    await conn.execution_options(isolation_level="REPEATABLE READ")
                # SQLite: the read transaction begun by the first statement is a snapshot.
                yield conn
        except DBAPIError as exc:
            raise translate(exc) from exc
        except _UNREACHABLE as exc:
            raise unreachable(exc) from exc

    async def transact(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Runs fn in one write transaction; retries it when a concurrent writer won."""
        delay = 0.02
        for attempt in range(WRITE_RETRIES):
            started = time.perf_counter()
            try:
                result, changed, done = await self._transact_once(fn)
            except (Aborted, _LostBeforeCommit) as exc:
                if attempt == WRITE_RETRIES - 1:
                    if isinstance(exc, _LostBeforeCommit):
                        raise translate(exc.error) from exc.error
                    raise
                if isinstance(exc, _LostBeforeCommit):
                    log.info("the database session ended before the commit; running it again")
                await asyncio.sleep(delay)
                delay *= 2
                continue
            DB_TRANSACTION_SECONDS.observe(time.perf_counter() - started)
            if changed:
                for listener in self._commit_listeners:
                    listener()
            for call in done:
                call()
            return result
        raise AssertionError("unreachable")

    async def _transact_once(
        self, fn: Callable[[AsyncConnection], Awaitable[T]]
    ) -> tuple[T, bool, list[Callable[[], None]]]:
        try:
            if self._sqlite_write is not None:
                async with self.writer():
                    with self._sqlite_write.connect() as sync_conn:
                        await sqlite_inline.begin_immediate(
                            sync_conn, timeout_ms=SQLITE_BUSY_TIMEOUT_MS
                        )
                        result = await self._run(sqlite_inline.as_async(sync_conn), fn)
                        sync_conn.commit()
                        return result
            assert self._engine is not None
            async with self._engine.begin() as conn:
                try:
                    return await self._run(conn, fn)
                except DBAPIError as exc:
                    if not exc.connection_invalidated:
                        raise
                    # The server ended the session before the commit (an administrator's
                    # pg_terminate_backend, a restart): nothing of it was written, and it
                    # runs again on a new connection. asyncpg may say so as "cannot switch
                    # to state N; another operation (2) is in progress" when it has read
                    # the server's FATAL error but not yet the socket's close.
                    raise _LostBeforeCommit(exc) from exc
        except DomainError:
            raise
        except DBAPIError as exc:
            raise translate(exc) from exc
        except _UNREACHABLE as exc:
            raise unreachable(exc) from exc

    async def _run(
        self, conn: AsyncConnection, fn: Callable[[AsyncConnection], Awaitable[T]]
    ) -> tuple[T, bool, list[Callable[[], None]]]:
        # conn.info outlives the checkout (it belongs to the pooled connection): reset it.
        conn.info.pop(_CHANGED, None)
        conn.info.pop(_AFTER_COMMIT, None)
        # Not in a `finally`: after a failed or canceled statement SQLAlchemy has invalidated
        # the connection, and touching conn.info then raises PendingRollbackError -- which
        # replaced a CancelledError and kept a canceled background loop (the pruner) alive,
        # hanging shutdowns. What fn left for after the commit goes with its transaction.
        result = await fn(conn)
        done: list[Callable[[], None]] = conn.info.pop(_AFTER_COMMIT, [])
        changed = bool(conn.info.pop(_CHANGED, False))
        if changed and not self.is_sqlite:
            # Delivered at commit, and only if the transaction commits.
            await conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
        return result, changed, done


class _LostBeforeCommit(Exception):
    """A write transaction's connection was lost before its commit: safe to run again."""

    def __init__(self, error: DBAPIError) -> None:
        super().__init__(str(error))
        self.error = error


# SQLSTATEs that mean "try again": serialization failure, deadlock.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}
# SQLSTATEs of a server that cannot be used right now: too many connections, shut down or
# terminated by an administrator, not accepting connections to this database (55000, as
# `ALLOW_CONNECTIONS false` answers). Class 08 (connection exceptions) too.
_UNREACHABLE_SQLSTATES = {"53300", "57P01", "57P02", "57P03", "55000"}
# Raised unwrapped by SQLAlchemy: opening a connection fails in the driver's own socket code
# (asyncpg: ConnectionRefusedError and other OSErrors, TimeoutError), or the pool has no
# connection to give within its timeout.
_UNREACHABLE: tuple[type[Exception], ...] = (OSError, SQLAlchemyTimeoutError)


def _unwritable(database: str, exc: Exception) -> str:
    """Why a SQLite file cannot be created or written, in words."""
    place = Path(database).parent
    while not place.exists() and place != place.parent:
        place = place.parent
    with contextlib.suppress(OSError):
        if os.statvfs(place).f_flag & os.ST_RDONLY:
            return f"read-only file system ({place})"
    if not os.access(place, os.W_OK):
        return f"permission denied ({place})"
    return getattr(exc, "strerror", None) or str(exc)


# SQLite's SQLITE_FULL ("database or disk is full") and PostgreSQL's disk_full.
_SQLITE_FULL = 13
_DISK_FULL_SQLSTATE = "53100"
DISK_FULL = "the database disk is full; try again later"


def unreachable(exc: Exception) -> Unavailable:
    log.warning("database unreachable: %s: %s", type(exc).__name__, exc)
    if isinstance(exc, SQLAlchemyTimeoutError):
        return Unavailable("no database connection is free; try again")
    return Unavailable("the database is unreachable; try again")


def translate(exc: DBAPIError) -> DomainError:
    """The one place database errors become domain errors."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return Aborted("a concurrent change won; try again")
    if isinstance(exc, IntegrityError):
        return AlreadyExists("the object conflicts with an existing one")
    text = str(orig).lower()
    if sqlstate == _DISK_FULL_SQLSTATE or getattr(orig, "sqlite_errorcode", None) == _SQLITE_FULL:
        log.error("database disk full: %s", orig)
        return Unavailable(DISK_FULL)
    if isinstance(exc, OperationalError) and "locked" in text:
        return Unavailable("the database is busy; try again")
    unreachable_state = sqlstate is not None and (
        sqlstate.startswith("08") or sqlstate in _UNREACHABLE_SQLSTATES
    )
    if exc.connection_invalidated or isinstance(exc, OperationalError) or unreachable_state:
        log.warning("database unavailable: %s: %s", type(orig).__name__, orig)
        return Unavailable("the database is unreachable; try again")
    log.error("unexpected database error: %s", exc)
    return Unavailable("the database failed; try again")
