"""Connections to the store: SQLite (the embedded default) or PostgreSQL, by URL.

Callers own their unit of work: `await db.transact(fn)` runs `fn(conn)` in one write
transaction (retried when a concurrent writer made it fail), `async with db.read()` gives a
read-only connection. Database errors become domain errors in one place
(jobtask.store.db_errors). `Database(url)` opens the URL's backend: SQLiteDatabase or
PostgresDatabase.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from jobtask.domain.errors import Aborted
from jobtask.observability.metrics import DB_TRANSACTION_SECONDS
from jobtask.store import json_codec, kept_tasks, row_cache, sqlite_inline
from jobtask.store.db_errors import LostBeforeCommit, translate, translated
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
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
# Connections a starting server opens before it serves (PostgresDatabase.warm): what one
# worker's session keeps busy at once -- a claim, a report group, a submission of tasks, a
# token's read (four in a fan-out's first second, the server's statement log showed) -- each
# of which, opened on demand, made its first caller wait for the connection and its types.
WARM_CONNECTIONS = 4
POOL_TIMEOUT_SECONDS = 30.0  # SQLAlchemy's default, made explicit
# Every PostgreSQL session of the store plans for index access, whatever the tables' size.
# PostgreSQL may cache a prepared statement's plan (a generic plan, after five runs) and keep
# it until the tables' statistics change. Made on a fan-out's first few tasks, with no
# statistics yet, where a table scan, a sort or a hash join is cheapest, it was kept while
# the job grew to thousands of tasks before autovacuum's ANALYZE: a claim then read every
# task of the job for each candidate (300,000 rows a claim at 6,000 tasks), a completion
# flush scanned every attempt for each task it closed. With those off the plan made on a
# small table is the one for a big one -- index walks and a probe per row -- so it can be
# kept (tests/core/test_claim_reads.py). A statement no index serves still scans or sorts.
# No JIT: its threshold is a plan's estimated cost, and the store's statements are short.
#
# A session idle inside a transaction for a minute is ended by the server. The store's
# transactions last milliseconds and never wait on a client between statements, so only a
# session its process lost hold of stays idle in one -- and it would hold its rows' locks
# (a job's row, a node's claim turn) until its socket closed, every claim and report group
# of that job or node, in every replica, waiting behind it; this bounds that to a minute.
# (It cannot end a forgotten transaction whose session still sends statements: the chaos
# pool_exhaustion stall was one, a BEGIN canceled on its way; see jobtask.store.driver's
# _discarded and _replace_if_closed below.)
SESSION_SETTINGS = {
    "jit": "off",
    "enable_seqscan": "off",
    "enable_sort": "off",
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
    "idle_in_transaction_session_timeout": "60000",  # (ms)
}
# PostgreSQL channel on which every transaction that changed the feed notifies the others.
NOTIFY_CHANNEL = "jobtask_events"
_CHANGED = "jobtask.changed"
_AFTER_COMMIT = "jobtask.after_commit"
_TALLY = "jobtask.tally"
_NOTIFIED = "jobtask.notified"
_CLAIMS_UNCHANGED = "jobtask.claims_unchanged"


def mark_changed(conn: AsyncConnection, *, notified: bool = False) -> None:
    """Records that this transaction changed something watchers or claimers wait for (the
    change feed, the set of live workers): at commit, this process's listeners are called
    and, on PostgreSQL, other processes are notified -- by a NOTIFY before the commit unless
    `notified`: a statement of the transaction notified already (inserting events does,
    through a trigger: migration 0019)."""
    conn.info[_CHANGED] = True
    if notified:
        conn.info[_NOTIFIED] = True


def claims_unchanged(conn: AsyncConnection) -> None:
    """Records that what this transaction changes makes no task claimable (tasks that wait
    for their creator to complete): at commit this process's listeners hear that claimers
    need not look again (other processes, notified, look all the same). The transaction
    must change nothing else a claim could take."""
    conn.info[_CLAIMS_UNCHANGED] = True


def after_commit(conn: AsyncConnection, fn: Callable[[], None]) -> None:
    """Calls fn once this transaction committed (never if it rolls back or is retried):
    for logs and metrics of what it changed."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(fn)


class _Tally:
    """A transaction's metric steps, taken at once after its commit: one `inc` per counter
    (a claim or a completion group of 100 tasks counted with one step, not 100) and each
    observation in the order made, with no closure and no callback per task."""

    __slots__ = ("counts", "observed")

    def __init__(self) -> None:
        self.counts: dict[Any, float] = {}
        self.observed: list[tuple[Any, float]] = []

    def __call__(self) -> None:
        for counter, amount in self.counts.items():
            counter.inc(amount)
        for histogram, value in self.observed:
            histogram.observe(value)


def _tally(conn: AsyncConnection) -> _Tally:
    info = conn.info
    tally: _Tally | None = info.get(_TALLY)
    if tally is None:
        tally = info[_TALLY] = _Tally()
        after_commit(conn, tally)
    return tally


def count_after_commit(conn: AsyncConnection, counter: Any, amount: float = 1) -> None:
    """Adds `amount` to `counter` (a prometheus_client Counter, or a labelled child) once this
    transaction committed (never if it rolls back or is retried), as after_commit would."""
    counts = _tally(conn).counts
    counts[counter] = counts.get(counter, 0) + amount


def observe_after_commit(conn: AsyncConnection, histogram: Any, value: float) -> None:
    """histogram.observe(value) once this transaction committed, as count_after_commit."""
    _tally(conn).observed.append((histogram, value))


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
    raise ValueError(
        f"unsupported database URL {shown_url(url)!r}: use sqlite:/// or postgresql://"
    )


def shown_url(url: str) -> str:
    """`url` as it is shown to people: with its password hidden (`***`)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unreadable database URL>"


class Database:
    """One store: `Database(url)` opens a SQLiteDatabase or a PostgresDatabase, by URL.

    Both run units of work the same way (transact, read, snapshot) and translate database
    errors in one place; what differs -- connections, the write turn, snapshots, notifying
    other processes, the migration lock -- is each backend's own."""

    dialect: str
    is_sqlite: bool
    # PostgreSQL: the task rows this process's write transactions committed.
    kept_tasks: kept_tasks.KeptTasks | None = None
    # Whether a commit notifies the other processes (LISTEN/NOTIFY): if not, each process
    # polls the change feed to hear their commits.
    notifies: bool

    def __new__(cls, url: str, **options: Any) -> Database:
        backend: type[Database] = cls
        if cls is Database:
            sqlite = make_url(normalize_url(url)).get_backend_name() == "sqlite"
            backend = SQLiteDatabase if sqlite else PostgresDatabase
        return object.__new__(backend)

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
        # The URL as given (a plain postgresql:// stays so), password hidden: for messages.
        self.shown_url = shown_url(url)
        self._commit_listeners: list[Callable[[bool], None]] = []
        self._open(pool_size=pool_size, max_overflow=max_overflow, echo=echo)

    def on_commit(self, listener: Callable[[bool], None]) -> None:
        """Calls listener after every write transaction of this process that changed
        something (see mark_changed), with whether the change may have made a task
        claimable (False: see claims_unchanged)."""
        self._commit_listeners.append(listener)

    def own_notification(self, pid: int) -> bool:
        """Whether a NOTIFY from server process `pid` was sent by this process's commit (see
        PostgresDatabase)."""
        return False

    # -- what each backend does its own way ---------------------------------------------

    def _open(self, *, pool_size: int | None, max_overflow: int | None, echo: bool) -> None:
        raise NotImplementedError

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[None]:
        """Holds this process's write turn (SQLite; a no-op on PostgreSQL)."""
        yield

    def pool_usage(self) -> tuple[int, int] | None:
        """PostgreSQL: (connections in use, connections open) of this process's pool."""
        return None

    async def warm(self) -> None:
        """PostgreSQL: opens the pool's first connections now (WARM_CONNECTIONS), as a
        server starts, rather than on its first claims, reports and submissions."""

    async def dispose(self) -> None:
        raise NotImplementedError

    def _connect(self, *, write: bool) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection outside any transaction of ours (PostgreSQL: autobegins one)."""
        raise NotImplementedError

    def _write_transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a write transaction, committed when the block ends without an
        exception."""
        raise NotImplementedError

    def ddl(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write connection for schema migrations; the caller commits."""
        raise NotImplementedError

    @asynccontextmanager
    async def migration_lock(self, conn: AsyncConnection) -> AsyncIterator[None]:
        """Held while one process migrates the schema (on a ddl() connection)."""
        yield

    async def _snapshot_isolation(self, conn: AsyncConnection) -> None:
        """Makes the statements of conn see one snapshot."""
        raise NotImplementedError

    async def _plain_reads(self, conn: AsyncConnection) -> None:
        """Readies a read() connection (see PostgresDatabase)."""

    async def _announce(self, conn: AsyncConnection) -> None:
        """Tells other processes, at commit, that this transaction changed something."""
        raise NotImplementedError

    # -- units of work --------------------------------------------------------------------

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with translated(), self._connect(write=False) as conn:
            await self._plain_reads(conn)
            yield conn

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read connection whose statements all see one snapshot of the database."""
        async with translated(), self._connect(write=False) as conn:
            await self._snapshot_isolation(conn)
            yield conn

    async def transact(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Runs fn in one write transaction; retries it when a concurrent writer won."""
        delay = 0.02
        for attempt in range(WRITE_RETRIES):
            started = time.perf_counter()
            try:
                async with translated(), self._write_transaction() as conn:
                    result, changed, claims, done = await self._run(conn, fn)
            except (Aborted, LostBeforeCommit) as exc:
                if attempt == WRITE_RETRIES - 1:
                    if isinstance(exc, LostBeforeCommit):
                        raise translate(exc.error) from exc.error
                    raise
                if isinstance(exc, LostBeforeCommit):
                    log.info("the database session ended before the commit; running it again")
                await asyncio.sleep(delay)
                delay *= 2
                continue
            DB_TRANSACTION_SECONDS.observe(time.perf_counter() - started)
            self._committed(changed, claims, done)
            return result
        raise AssertionError("unreachable")

    async def alone(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Runs fn on a write connection outside any transaction (PostgreSQL): each of its
        statements commits by itself, as it ends, in the database -- so a statement that
        locks rows holds them only while the database runs it, not until a COMMIT has come
        back from the client (a round trip, and the wait for this process's event loop to
        read the answer). For fn whose writes are ONE statement (a report group's guarded
        flush: jobtask.manager.reports). Once fn returns, what it marked is done as a
        transaction's commit does it (listeners, after_commit); if fn raises, none of it
        is, and nothing is retried (a deadlock's Aborted reaches the caller)."""
        async with translated(), self._connect(write=True) as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            self._ready_writer(conn)
            result, changed, claims, done = await self._run(conn, fn)
        self._committed(changed, claims, done)
        return result

    def _committed(self, changed: bool, claims: bool, done: list[Callable[[], None]]) -> None:
        """What follows a commit: this process's listeners if it changed something (`claims`:
        whether it may have made a task claimable), then what its work left for after it
        (logs, metrics, kept rows)."""
        if changed:
            for listener in self._commit_listeners:
                listener(claims)
        for call in done:
            call()

    def _ready_writer(self, conn: AsyncConnection) -> None:
        """Readies a write connection: an alone() one, or (PostgreSQL) a transaction's."""
        raise NotImplementedError("only PostgreSQL runs statements alone")

    async def _run(
        self, conn: AsyncConnection, fn: Callable[[AsyncConnection], Awaitable[T]]
    ) -> tuple[T, bool, bool, list[Callable[[], None]]]:
        """fn's result; whether it changed something; whether that may have made a task
        claimable; what it left for after the commit."""
        # conn.info outlives the checkout (it belongs to the pooled connection): reset it.
        conn.info.pop(_CHANGED, None)
        conn.info.pop(_CLAIMS_UNCHANGED, None)
        conn.info.pop(_NOTIFIED, None)
        conn.info.pop(_AFTER_COMMIT, None)
        conn.info.pop(_TALLY, None)
        # Not in a `finally`: after a failed or canceled statement SQLAlchemy has invalidated
        # the connection, and touching conn.info then raises PendingRollbackError -- which
        # replaced a CancelledError and kept a canceled background loop (the pruner) alive,
        # hanging shutdowns. What fn left for after the commit goes with its transaction.
        result = await fn(conn)
        done: list[Callable[[], None]] = conn.info.pop(_AFTER_COMMIT, [])
        conn.info.pop(_TALLY, None)  # (in `done` if any step was taken)
        claims = not conn.info.pop(_CLAIMS_UNCHANGED, False)
        if not conn.info.pop(_CHANGED, False):
            return result, False, False, done
        if not conn.info.pop(_NOTIFIED, False):
            await self._announce(conn)
        return result, True, claims, done


def _switch_to_wal(database: str) -> None:
    """Switches the file to WAL once, before any pooled connection opens it (WAL is a
    property of the file). Processes starting together on a fresh file race for the switch,
    and SQLite answers the losers "database is locked" at once, without waiting out
    busy_timeout (the switch needs the file to itself): they try again until it is done."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn:
                conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class SQLiteDatabase(Database):
    """A SQLite file: statements run inline (jobtask.store.sqlite_inline), and writes go
    through one connection at a time per process (the write turn), under the file's write
    lock from their first statement (BEGIN IMMEDIATE)."""

    dialect = "sqlite"
    is_sqlite = True
    notifies = False

    def _open(self, *, pool_size: int | None, max_overflow: int | None, echo: bool) -> None:
        self._write_lock = asyncio.Lock()
        database = make_url(self.url).database or ""
        self._prepare_file(database)
        self._write_engine = sqlite_inline.engine(database, writer=True, echo=echo)
        self._read_engine = sqlite_inline.engine(database, writer=False, echo=echo)
        # The rows this process's write transactions ended with (jobtask.store.row_cache).
        self.rows = row_cache.RowCache()
        event.listen(self._write_engine, "rollback_savepoint", _savepoint_rolled_back)

    @staticmethod
    def _prepare_file(database: str) -> None:
        """Creates the file (and its directory) and switches it to WAL; a place it cannot
        write is an OSError saying so in one line (`jobtask up` prints it and exits 1)."""
        if database and database != ":memory:":
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                _switch_to_wal(database)
            except (OSError, sqlite3.Error) as exc:
                raise OSError(
                    f"cannot write the database at {database}: {_unwritable(database, exc)}"
                ) from None

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[None]:
        async with self._write_lock:
            yield

    async def dispose(self) -> None:
        self._write_engine.dispose()
        self._read_engine.dispose()
        # A checkpoint this process's commits started may still be running in its thread,
        # its connection the file's last: once disposed, nothing of this process touches
        # the file (a test reading its bytes next failed once in CI; a copy taken after a
        # stop).
        await sqlite_inline.Checkpoints.idle()

    @asynccontextmanager
    async def _connect(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        if not write:
            with self._read_engine.connect() as sync_conn:
                yield sqlite_inline.as_async(sync_conn)
            return
        # The write connection outside a write transaction: whatever it does is not
        # accounted for (row_cache's rule 2).
        try:
            with self._write_engine.connect() as sync_conn:
                yield sqlite_inline.as_async(sync_conn)
        finally:
            self.rows.clear()

    async def _snapshot_isolation(self, conn: AsyncConnection) -> None:
        """Nothing to do: the read transaction begun by the first statement is a snapshot."""

    async def _announce(self, conn: AsyncConnection) -> None:
        """Nothing to send: other processes poll the change feed (jobtask.server.upkeep)."""

    @asynccontextmanager
    async def _immediate(self) -> AsyncIterator[Connection]:
        """The write turn and the file's write lock, from the start."""
        async with self.writer():
            with self._write_engine.connect() as sync_conn:
                await sqlite_inline.begin_immediate(sync_conn, timeout_ms=SQLITE_BUSY_TIMEOUT_MS)
                yield sync_conn

    @asynccontextmanager
    async def _write_transaction(self) -> AsyncIterator[AsyncConnection]:
        """Also accounts for the transaction's row changes, and keeps the rows it wrote once
        it committed (jobtask.store.row_cache); a rollback drops every kept row."""
        async with self._immediate() as sync_conn:
            account = self.rows.begin(sync_conn)
            # (The pooled connection's dict, looked up once: after a failed statement
            # SQLAlchemy's Connection.info raises.)
            info = sync_conn.info
            info[row_cache.KEY] = account
            try:
                yield sqlite_inline.as_async(sync_conn)
                accounted = account.before_commit()
                sync_conn.commit()
            except BaseException:
                self.rows.clear()
                raise
            finally:
                info.pop(row_cache.KEY, None)
            account.committed(accounted)

    @asynccontextmanager
    async def ddl(self) -> AsyncIterator[AsyncConnection]:
        """Holds the write turn and the file's write lock, which keep other migrators out.
        What it changes is not accounted for: every kept row is dropped."""
        try:
            async with self._immediate() as sync_conn:
                yield sqlite_inline.as_async(sync_conn)
        finally:
            self.rows.clear()


def _savepoint_rolled_back(conn: Connection, name: Any, context: Any) -> None:
    account = conn.info.get(row_cache.KEY)
    if account is not None:
        account.spoil()


class PostgresDatabase(Database):
    """A PostgreSQL server through asyncpg and a connection pool; a transaction that changed
    something notifies the other processes (NOTIFY_CHANNEL)."""

    dialect = "postgresql"
    is_sqlite = False
    notifies = True
    kept_tasks: kept_tasks.KeptTasks

    def _open(self, *, pool_size: int | None, max_overflow: int | None, echo: bool) -> None:
        size = _env_int("JOBTASK_DB_POOL_SIZE", DEFAULT_POOL_SIZE, minimum=1)
        size = size if pool_size is None else pool_size
        overflow = _env_int("JOBTASK_DB_MAX_OVERFLOW", size, minimum=0)
        overflow = overflow if max_overflow is None else max_overflow
        self._engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=size,
            max_overflow=overflow,
            pool_timeout=POOL_TIMEOUT_SECONDS,
            # The connection returned last is the next one out. A connection's prepared
            # statements and their plans are its own: PostgreSQL plans each statement anew
            # for its first five runs on a connection (then keeps a generic plan), ~1-3 ms of
            # its CPU a claim or report group each time. Handed out in turn, every pooled
            # connection went through those five for every statement; most recent first, the
            # few a worker's session keeps busy have them, and the others stay idle.
            pool_use_lifo=True,
            echo=echo,
            json_serializer=json_codec.dumps,
            json_deserializer=json_codec.loads,
            connect_args={"server_settings": SESSION_SETTINGS},
        )
        # Not pool_pre_ping: SQLAlchemy's asyncpg ping is three round trips (BEGIN, ";",
        # ROLLBACK) before every transaction, a fifth of a claim's. A connection whose
        # session the server ended (a restart, pg_terminate_backend) has seen its socket
        # close by the time it is checked out, and is replaced then, for nothing; one whose
        # end has not arrived yet fails its first statement, and a write transaction then
        # runs again on a new connection (LostBeforeCommit).
        event.listen(self._engine.sync_engine.pool, "checkout", _replace_if_closed)
        # Our pooled sessions by server process id (see own_notification).
        self._sessions: dict[int, Any] = {}
        event.listen(self._engine.sync_engine.pool, "connect", self._remember_session)
        event.listen(self._engine.sync_engine.pool, "connect", _learn_array_types)
        # The task rows this process's write transactions committed (jobtask.store.kept_tasks).
        self.kept_tasks = kept_tasks.KeptTasks()

    def _remember_session(self, dbapi_connection: Any, record: Any) -> None:
        session = dbapi_connection.driver_connection
        for pid, known in list(self._sessions.items()):
            if known.is_closed():
                del self._sessions[pid]
        self._sessions[session.get_server_pid()] = session

    def own_notification(self, pid: int) -> bool:
        """Whether a NOTIFY came from one of this process's open sessions: its commit called
        this process's on_commit listeners already (every transaction that notifies is
        marked changed), so the LISTEN connection need not wake the waiters a second time.
        A session that closed is not ours any more: the server may give its process id to
        another client's. (Behind a pooler the id a session reports is not its server
        process's: nothing matches, and every notification counts.)"""
        session = self._sessions.get(pid)
        return session is not None and not session.is_closed()

    def pool_usage(self) -> tuple[int, int] | None:
        pool = self._engine.pool
        checked_out = int(getattr(pool, "checkedout", lambda: 0)())
        return checked_out, checked_out + int(getattr(pool, "checkedin", lambda: 0)())

    async def warm(self) -> None:
        size = self._engine.pool.size()  # type: ignore[attr-defined]
        opened: list[AsyncConnection] = []

        async def one() -> None:
            opened.append(await self._engine.connect().start())

        try:
            await asyncio.gather(*(one() for _ in range(min(WARM_CONNECTIONS, size))))
        finally:
            # Back into the pool, open.
            await asyncio.gather(*(conn.close() for conn in opened))

    async def dispose(self) -> None:
        await self._engine.dispose()

    @asynccontextmanager
    async def _connect(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def ddl(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as conn:
            try:
                yield conn
            finally:
                # Not back into the pool: SQLAlchemy has every connection open when DDL
                # ran forget the types asyncpg learnt (_learn_array_types) at its next
                # statement, which then asks for each again.
                await conn.invalidate()

    @asynccontextmanager
    async def _write_transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.begin() as conn:
            self._ready_writer(conn)
            try:
                yield conn
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                # The server ended the session before the commit (an administrator's
                # pg_terminate_backend, a restart): nothing of it was written, and it runs
                # again on a new connection. asyncpg may say so as "cannot switch to state
                # N; another operation (2) is in progress" when it has read the server's
                # FATAL error but not yet the socket's close. (A failed commit is not
                # caught here: its outcome is unknown.)
                raise LostBeforeCommit(exc) from exc

    def _ready_writer(self, conn: AsyncConnection) -> None:
        # (conn.info belongs to the pooled connection: every write connection of this
        # Database shares its KeptTasks; a read never looks.)
        conn.info[kept_tasks.KEY] = self.kept_tasks

    @asynccontextmanager
    async def migration_lock(self, conn: AsyncConnection) -> AsyncIterator[None]:
        """Replicas starting together: one migrates, the others wait, then find nothing to
        do."""
        await conn.execute(_ADVISORY_LOCK, {"k": _MIGRATION_LOCK_KEY})
        await conn.commit()
        try:
            yield
        finally:
            await conn.execute(_ADVISORY_UNLOCK, {"k": _MIGRATION_LOCK_KEY})
            await conn.commit()

    async def _snapshot_isolation(self, conn: AsyncConnection) -> None:
        await conn.execution_options(isolation_level="REPEATABLE READ")

    async def _plain_reads(self, conn: AsyncConnection) -> None:
        """Each statement of a read() runs in a transaction of its own (autocommit): at the
        default READ COMMITTED each statement sees a snapshot of its own in any case, and
        the transaction's BEGIN and ROLLBACK were two round trips of every read, as many as
        its statement (an API token's lookup, a GetJob). snapshot() keeps one transaction."""
        await conn.execution_options(isolation_level="AUTOCOMMIT")

    async def _announce(self, conn: AsyncConnection) -> None:
        # Delivered at commit, and only if the transaction commits.
        await conn.execute(_NOTIFY)


# The array types the store binds and reads (with their element types, what asyncpg needs
# to know of them). asyncpg knows only text[] and oid[] without asking the server
# (MagicStack/asyncpg#1272): it asks for any other the first time a statement of a connection
# binds or returns one, a query of its catalog (a recursive CTE: ~4 ms of the database's CPU
# to parse and ~7 ms to plan here) per statement that brings a new one -- three or four on
# each new connection of the pool, each on some claim's or report group's path. One
# statement that names them all, prepared as the connection opens, asks once.
ARRAY_TYPES = (
    "bool",
    "int2",
    "int4",
    "int8",
    "float4",
    "float8",
    "varchar",
    "bytea",
    "timestamptz",
    "json",
    "jsonb",
    "uuid",
)
_ARRAYS = "SELECT " + ", ".join(f"${i}::{name}[]" for i, name in enumerate(ARRAY_TYPES, 1))


def _learn_array_types(dbapi_connection: Any, record: Any) -> None:
    """The pool's connect hook: teaches a new asyncpg connection the store's array types
    (see ARRAY_TYPES) in one round of questions."""
    dbapi_connection.run_async(lambda session: session.prepare(_ARRAYS))


def _replace_if_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled connection whose socket closed is thrown away and the checkout retried with
    a new one (SQLAlchemy's way for DisconnectionError), without a round trip. So is one
    the server says is still in a transaction (asyncpg reads that from the server's last
    answer): every transaction of ours ends before its connection goes back, so one left
    open is a bug, and a connection kept so would run every later transaction as a
    savepoint inside it, its locks held and its writes unseen (jobtask.store.driver's
    _discarded: the one way it was seen). Closing it rolls that transaction back."""
    session = dbapi_connection.driver_connection
    if session.is_closed():
        raise DisconnectionError("the server closed this connection")
    if session.is_in_transaction():
        log.warning("a pooled connection was still in a transaction: replaced")
        raise DisconnectionError("the connection was left in a transaction")


# Any constant shared by every replica: PostgreSQL advisory lock key for migrations.
_MIGRATION_LOCK_KEY = 0x6A6F627461736B  # "jobtask"
_ADVISORY_LOCK = text("SELECT pg_advisory_lock(:k)")
_ADVISORY_UNLOCK = text("SELECT pg_advisory_unlock(:k)")
_NOTIFY = text(f"NOTIFY {NOTIFY_CHANNEL}")


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
