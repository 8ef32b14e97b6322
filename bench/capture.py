"""The SQL a jobtask server sends, recorded per transaction, and replayed with the bare
driver (bench.ceiling: the database alone doing the hot path's statements).

`Capture` listens to every SQLAlchemy engine of its process (`before_cursor_execute`,
`commit`, `rollback` on the Engine class): each statement with its parameters as handed to
the driver (pysqlite or asyncpg), grouped by driver connection into transactions, each
stamped (time.time()) as it committed or rolled back. SQLite's BEGIN and BEGIN IMMEDIATE are
statements of their own there (jobtask.store.sqlite_inline), so they are replayed as sent;
on PostgreSQL the transaction (and its isolation level) is the driver's, so the replay opens
one per recorded transaction.

The replay runs every recorded transaction, in commit order, on one connection: those
committed before the window untimed (the schema, the token, the job: the same start), those
in the window timed, nothing else: no Python of jobtask's, no gRPC, no pool.
"""

from __future__ import annotations

import contextlib
import pickle
import sqlite3
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jobtask.store.database import SESSION_SETTINGS
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url

from bench.harness import PostgresCpu, own_cpu_seconds

# A statement's first words name it in the replay's account of where the time went.
HEAD_WORDS = 6
# One statement as the driver got it: SQL text, parameters, executemany or not.
Statement = tuple[str, Any, bool]


@dataclass
class Transaction:
    ended: float  # time.time() at its commit or rollback
    committed: bool
    isolation: str | None
    statements: list[Statement]


@dataclass
class Capture:
    """Records every statement of this process's engines, per transaction."""

    done: list[Transaction] = field(default_factory=list)
    open: dict[int, tuple[str | None, list[Statement]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "commit", self._commit)
        event.listen(Engine, "rollback", self._rollback)

    @staticmethod
    def _key(conn: Connection) -> int:
        return id(conn.connection.dbapi_connection)

    def _statement(
        self, conn: Connection, cursor: Any, sql: str, params: Any, context: Any, many: bool
    ) -> None:
        key = self._key(conn)
        if key not in self.open:
            self.open[key] = (conn.get_execution_options().get("isolation_level"), [])
        # SQLAlchemy's "insert many values" sends one multi-row INSERT with every row's
        # parameters flattened, under executemany=True: it is one execute.
        many = many and bool(params) and isinstance(params[0], (tuple, list, dict))
        params = [_plain(p) for p in params] if many else _plain(params)
        self.open[key][1].append((sql, params, many))

    def _end(self, conn: Connection, committed: bool) -> None:
        isolation, statements = self.open.pop(self._key(conn), (None, []))
        if statements:
            self.done.append(Transaction(time.time(), committed, isolation, statements))

    def _commit(self, conn: Connection) -> None:
        self._end(conn, True)

    def _rollback(self, conn: Connection) -> None:
        self._end(conn, False)

    def dump(self, path: str) -> None:
        with open(path, "wb") as f:
            pickle.dump(self.done, f)


def _plain(params: Any) -> Any:
    """The parameters as the driver takes them, picklable (SQLAlchemy binds blobs to
    SQLite as memoryview: the same bytes)."""
    if isinstance(params, (tuple, list)):
        return type(params)(bytes(v) if isinstance(v, memoryview) else v for v in params)
    return params


def load(path: str) -> list[Transaction]:
    with open(path, "rb") as f:
        loaded: list[Transaction] = pickle.load(f)
    return sorted(loaded, key=lambda t: t.ended)


def split(
    log: Sequence[Transaction], window: tuple[float, float]
) -> tuple[list[Transaction], list[Transaction]]:
    """The transactions before the window (the start to set up) and those in it."""
    start, end = window
    before = [t for t in log if t.ended < start]
    inside = [t for t in log if start <= t.ended <= end]
    return before, inside


@dataclass
class Replayed:
    seconds: float
    transactions: int
    statements: int
    rows: int  # executemany rows counted one each
    client_cpu: float  # the replaying process (on SQLite: the database itself)
    database_cpu: float  # PostgreSQL's backend for the replay connection
    # Seconds per statement (its first words), the costliest first.
    costliest: list[tuple[str, float]] = field(default_factory=list)


# Seconds spent per statement (its first words).
Spent = defaultdict[str, float]


def costliest(spent: Spent, n: int) -> list[tuple[str, float]]:
    return sorted(spent.items(), key=lambda item: item[1], reverse=True)[:n]


def _count(
    txns: Sequence[Transaction], seconds: float, cpu: tuple[float, float], spent: Spent
) -> Replayed:
    statements = sum(len(t.statements) for t in txns)
    rows = sum(len(p) if many else 1 for t in txns for _, p, many in t.statements)
    return Replayed(seconds, len(txns), statements, rows, *cpu, costliest(spent, 3))


def _head(sql: str) -> str:
    return " ".join(sql.split()[:HEAD_WORDS])


# -- SQLite: the sqlite3 module, with the store's pragmas -------------------------------


def sqlite_connect(path: str) -> sqlite3.Connection:
    """A connection set up as jobtask.store.sqlite_inline sets up its writer's."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "busy_timeout=0",
        "foreign_keys=ON",
        "case_sensitive_like=ON",
    ):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def _sqlite_run(conn: sqlite3.Connection, txn: Transaction, spent: Spent) -> None:
    cursor = conn.cursor()
    for sql, params, many in txn.statements:
        start = time.perf_counter()
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params or ()).fetchall()
        spent[_head(sql)] += time.perf_counter() - start
    if conn.in_transaction:
        conn.execute("COMMIT" if txn.committed else "ROLLBACK")


def replay_sqlite(path: str, log: Sequence[Transaction], window: tuple[float, float]) -> Replayed:
    before, inside = split(log, window)
    with contextlib.closing(sqlite_connect(path)) as conn:
        spent: Spent = defaultdict(float)
        for txn in before:
            _sqlite_run(conn, txn, spent)
        spent.clear()
        cpu, start = own_cpu_seconds(), time.perf_counter()
        for txn in inside:
            _sqlite_run(conn, txn, spent)
        seconds = time.perf_counter() - start
        cpu = own_cpu_seconds() - cpu
    return _count(inside, seconds, (cpu, 0.0), spent)


def _wal_pages(wal: str) -> list[int]:
    """The page number of every frame in a WAL file, in the order written (the file's
    format: a 32-byte header, then per frame a 24-byte header whose first four bytes are
    the page number, then the page)."""
    with open(wal, "rb") as f:
        data = f.read()
    if len(data) < 32:
        return []
    page_size = int.from_bytes(data[8:12], "big")
    pages = []
    for offset in range(32, len(data) - 24 + 1, 24 + page_size):
        number = int.from_bytes(data[offset : offset + 4], "big")
        if number == 0:
            break
        pages.append(number)
    return pages


def pages_written(path: str, log: Sequence[Transaction]) -> dict[str, int]:
    """The pages SQLite writes (WAL frames) for the recorded transactions after the
    schema's, by table or index, the most first: the recording replayed on a fresh file
    at `path`, the WAL checkpointed after the schema and never again (a frame per page a
    transaction dirtied: what each commit writes and the checkpoints copy back).

    A table or index keyed at random (a uuid) costs a page per row its transaction
    writes; one keyed in order, a page per page of rows."""
    last_ddl = max(
        (
            i
            for i, t in enumerate(log)
            if any(_head(s).startswith(_DDL) for s, _, _ in t.statements)
        ),
        default=-1,
    )
    with contextlib.closing(sqlite_connect(path)) as conn:
        conn.execute("PRAGMA wal_autocheckpoint=0")
        spent: Spent = defaultdict(float)
        for txn in log[: last_ddl + 1]:
            _sqlite_run(conn, txn, spent)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for txn in log[last_ddl + 1 :]:
            _sqlite_run(conn, txn, spent)
        owners = {number: name for name, number in conn.execute("SELECT name, pageno FROM dbstat")}
        counted: defaultdict[str, int] = defaultdict(int)
        for number in _wal_pages(path + "-wal"):
            counted[owners.get(number, "(free)")] += 1
    return dict(sorted(counted.items(), key=lambda item: item[1], reverse=True))


_DDL = ("CREATE", "ALTER", "DROP", "PRAGMA")


# -- PostgreSQL: asyncpg, one connection --------------------------------------------------

_ISOLATION = {"REPEATABLE READ": "repeatable_read", "SERIALIZABLE": "serializable"}


async def _pg_run(conn: Any, txn: Transaction, spent: Spent) -> None:
    tr = conn.transaction(isolation=_ISOLATION.get(txn.isolation or "", "read_committed"))
    await tr.start()
    for sql, params, many in txn.statements:
        start = time.perf_counter()
        if many:
            await conn.executemany(sql, params)
        elif params:
            await conn.fetch(sql, *params)
        else:
            await conn.execute(sql)
        spent[_head(sql)] += time.perf_counter() - start
    await (tr.commit() if txn.committed else tr.rollback())


async def replay_postgres(
    dsn: str, log: Sequence[Transaction], window: tuple[float, float]
) -> Replayed:
    import asyncpg  # type: ignore[import-untyped]  # no stubs published

    before, inside = split(log, window)
    # As the store's own sessions are set (no JIT).
    conn = await asyncpg.connect(dsn, server_settings=SESSION_SETTINGS)
    try:
        spent: Spent = defaultdict(float)
        for txn in before:
            await _pg_run(conn, txn, spent)
        spent.clear()
        backend = PostgresCpu(make_url(dsn).database or "")
        backend.start()
        cpu, start = own_cpu_seconds(), time.perf_counter()
        for txn in inside:
            await _pg_run(conn, txn, spent)
        seconds = time.perf_counter() - start
        db = backend.stop()
        cpu = own_cpu_seconds() - cpu - backend.own
    finally:
        await conn.close()
    return _count(inside, seconds, (cpu, db), spent)


def main(argv: Sequence[str]) -> None:
    """python -m bench.capture FILE [N]: the pages written per table or index of a
    recording (`bench.server --capture FILE`), per N units of work (jobs, tasks) if given."""
    import tempfile

    per = int(argv[1]) if len(argv) > 1 else 1
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        pages = pages_written(f"{tmp}/replay.sqlite3", load(argv[0]))
    total = sum(pages.values())
    print(f"{total / per:.2f} pages written per unit ({total:,} in all)")
    for name, n in pages.items():
        print(f"  {n / per:7.3f}  {100 * n / total:5.1f} %  {name}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
