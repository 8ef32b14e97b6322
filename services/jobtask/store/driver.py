"""PostgreSQL: the hot path's statements sent to asyncpg directly, rows as asyncpg Records.

SQLAlchemy's asyncpg adaptation costs ~120-150 us of the server's CPU per statement, and
~2 us per row, above what asyncpg itself takes (the cursor's description built at every
execute, the greenlet switch of every await, a Row per row; SQLAlchemy 2.1, bench/README.md,
the twenty-first session): a claim and a report group of 50 tasks send about eight
statements, so the adaptation was ~30 us a task, a tenth of the server's. `rows` sends a
statement built with SQLAlchemy (compiled once per dialect, its parameters through their bind
processors), `send` one already in the driver's form (jobtask.store.flush_sql's), through the
same connection, in the same transaction, with the same prepared-statement cache, and keep
the rest of SQLAlchemy's contract:

- the transaction: begun first if this is its first statement (the adapter begins lazily);
- errors: wrapped as SQLAlchemy wraps them (DBAPIError.instance: IntegrityError,
  OperationalError..., `orig` the driver's error with its sqlstate), and a lost connection
  invalidated, so that jobtask.store.db_errors and a transaction's re-run see what they see
  for any other statement (tests/core/test_driver_reads.py); after an exit exception (a
  CancelledError) the connection is thrown away, as SQLAlchemy throws it away (_discarded);
- events: before_cursor_execute and after_cursor_execute are dispatched with the statement's
  text and its positional parameters, so that whoever listens (the tests' statement counts,
  bench.holds, bench.capture) sees these statements too.

Rows are asyncpg Records: by position (or by name, `record["id"]`), their JSON already decoded
by the codecs SQLAlchemy set on the connection, times aware. A write's row count is not
reported (its RETURNING rows are). SQLite runs inline (jobtask.store.sqlite_inline): `rows`
sends its statements through SQLAlchemy as before.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["rows", "send"]


@functools.lru_cache(maxsize=512)
def _compiled(statement: Any, dialect: Dialect) -> tuple[Any, list[tuple[str, Any]]]:
    """The statement compiled for the dialect (its text, with $1, $2...), and in the order
    of those its parameters' names, each with the bind processor SQLAlchemy would run on
    its value (None: none; a JSON parameter's serializer, say). The store's statements are
    built once, at import: each is compiled once per dialect."""
    compiled: Any = statement.compile(dialect=dialect)  # (an SQLCompiler)
    processors = compiled._bind_processors
    return compiled, [(name, processors.get(name)) for name in compiled.positiontup or ()]


async def rows(conn: AsyncConnection, statement: Executable, params: dict[str, Any]) -> list[Any]:
    """The rows of a statement built with SQLAlchemy, sent to asyncpg in conn's
    transaction; on SQLite, through SQLAlchemy as any statement (its Rows, read by position
    alike), so that a caller need not tell the stores apart."""
    if conn.dialect.name != "postgresql":
        return list(await conn.execute(statement, params))
    compiled, order = _compiled(statement, conn.dialect)
    values = compiled.construct_params(params)
    args = tuple([values[name] if proc is None else proc(values[name]) for name, proc in order])
    return await send(conn, compiled.string, args)


async def send(conn: AsyncConnection, sql: str, args: tuple[Any, ...]) -> list[Any]:
    """The rows of a statement already in the driver's form (PostgreSQL): its text with
    $1, $2... and its parameters in that order, as jobtask.store.flush_sql builds them (a
    write answers its RETURNING rows, or none)."""
    sync = conn.sync_connection
    assert sync is not None
    dispatch = sync.dispatch
    dispatch.before_cursor_execute(sync, None, sql, args, None, False)
    adapter: Any = (await conn.get_raw_connection()).dbapi_connection
    async with adapter._execute_mutex:
        try:
            if adapter._transaction is None:
                await adapter._start_transaction()
            prepared, _ = await adapter._prepare(sql, _schema_asof(conn.dialect))
            found: list[Any] = await prepared.fetch(*args)
        except Exception as error:  # (asyncpg's, and the adapter's own)
            raise await _wrapped(conn, adapter, error, sql, args) from error
        except BaseException as error:  # an exit exception: a CancelledError
            await _discarded(conn, adapter, error)
            raise
    dispatch.after_cursor_execute(sync, None, sql, args, None, False)
    return found


async def _discarded(conn: AsyncConnection, adapter: Any, error: BaseException) -> None:
    """The connection thrown away after an exit exception (a CancelledError: the caller's
    task canceled, a worker session's loop when the session ends) in the middle of a
    statement or of the BEGIN before it, as SQLAlchemy throws away one whose statement it
    sent (Connection._handle_dbapi_exception). A BEGIN canceled on its way leaves asyncpg
    counting the transaction as its connection's own (failed) while the server is in it:
    back in the pool, every later transaction on it would be a SAVEPOINT in that one, its
    commit a RELEASE, its locks held and its writes unseen until the session died
    (tests/core/test_driver_reads.py). The socket is closed first, at once (nothing to
    await, so a second cancel cannot stop it: the server then rolls back), then SQLAlchemy
    told (its record invalidated; the pool's checkout would replace a closed connection in
    any case)."""
    adapter._connection.terminate()
    with contextlib.suppress(Exception):
        await conn.invalidate(error)


def _schema_asof(dialect: Dialect) -> float:
    """When the dialect last saw the schema change (its cursors' prepared statements made
    before are prepared again)."""
    asof: float = getattr(dialect, "_invalidate_schema_cache_asof", 0.0)
    return asof


async def _wrapped(
    conn: AsyncConnection, adapter: Any, error: Exception, sql: str, args: tuple[Any, ...]
) -> Exception:
    """`error` as SQLAlchemy would have raised it (Connection._handle_dbapi_exception): the
    adapter's DBAPI error for it, wrapped in DBAPIError.instance's class; a lost connection
    invalidated first (the pool then replaces it, and the error says so)."""
    try:
        adapter._handle_exception(error)
    except Exception as translated:
        dbapi_error = translated
    else:  # (it always raises)
        dbapi_error = error
    dialect = conn.dialect
    base = dialect.loaded_dbapi.Error
    if not isinstance(dbapi_error, base):
        return dbapi_error
    lost = dialect.is_disconnect(dbapi_error, adapter, None)
    if lost:
        await conn.invalidate(dbapi_error)
    return DBAPIError.instance(
        sql, args, dbapi_error, base, connection_invalidated=lost, dialect=dialect
    )
