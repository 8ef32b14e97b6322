"""The hot path's reads sent to asyncpg directly (jobtask.store.driver) keep SQLAlchemy's
contract: they run in the unit of work's transaction (even as its first statement), their
errors reach jobtask.store.db_errors as SQLAlchemy's would (a lost session runs the
transaction again), a canceled one leaves nothing open behind it, and statement listeners
see them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from jobtask.domain.errors import Unavailable
from jobtask.store import driver
from jobtask.store.database import Database
from sqlalchemy import Integer, bindparam, column, event, func, literal, select, table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.core.raw_rows import connect
from tests.core.test_killed_connections import killed_between_statements
from tests.engines import engines_of

pytestmark = pytest.mark.postgres

_XACT = select(func.txid_current())
_MARKS = select(func.count()).select_from(table("marks", column("run")))


async def test_a_first_read_begins_the_transaction_the_rest_runs_in(postgres_url: str) -> None:
    db = Database(postgres_url)

    async def ids(conn: AsyncConnection) -> tuple[int, int]:
        (first,) = await driver.rows(conn, _XACT, {})
        later = (await conn.execute(_XACT)).scalar_one()
        return int(first[0]), int(later)

    try:
        first, later = await db.transact(ids)
        again, _ = await db.transact(ids)
    finally:
        await db.dispose()
    assert first == later  # one transaction
    assert again != first  # and the next its own


async def test_parameters_are_processed_as_sqlalchemy_processes_them(postgres_url: str) -> None:
    """A JSON parameter goes through its bind processor (the serializer), as it would
    through SQLAlchemy's cursor."""
    db = Database(postgres_url)
    typed = select(func.jsonb_typeof(bindparam("p", type_=JSONB)), bindparam("n", type_=Integer))

    async def read(conn: AsyncConnection) -> list[Any]:
        return [tuple(row) for row in await driver.rows(conn, typed, {"p": {"a": [1]}, "n": 3})]

    try:
        assert await db.transact(read) == [("object", 3)]
    finally:
        await db.dispose()


async def test_an_error_is_raised_as_sqlalchemy_raises_it(postgres_url: str) -> None:
    """Division by zero (SQLSTATE 22012): the same DBAPIError class, the driver's error
    with its sqlstate as `orig`, and the same domain error once translated."""
    db = Database(postgres_url)
    failing = select(literal(1) / literal(0))
    caught: dict[str, BaseException] = {}

    async def run(conn: AsyncConnection, how: str) -> None:
        try:
            if how == "driver":
                await driver.rows(conn, failing, {})
            else:
                await conn.execute(failing)
        except DBAPIError as exc:
            caught[how] = exc
            raise

    try:
        for how in ("sqlalchemy", "driver"):
            with pytest.raises(Unavailable, match="the database failed"):
                await db.transact(lambda conn, how=how: run(conn, how))  # type: ignore[misc]
    finally:
        await db.dispose()
    assert type(caught["driver"]) is type(caught["sqlalchemy"])
    orig: Any = getattr(caught["driver"], "orig", None)
    assert orig.sqlstate == "22012"
    assert not getattr(caught["driver"], "connection_invalidated", True)


async def test_a_read_on_a_killed_session_runs_the_transaction_again(postgres_url: str) -> None:
    """As tests/core/test_killed_connections.py, the statement after the kill a driver read:
    it fails as a lost connection (invalidated), and the transaction runs again."""

    async def count(conn: AsyncConnection) -> int:
        ((found,),) = await driver.rows(conn, _MARKS, {})
        return int(found)

    await killed_between_statements(postgres_url, count)


async def test_listeners_see_a_driver_read(postgres_url: str) -> None:
    db = Database(postgres_url)
    (engine,) = engines_of(db)
    seen: list[tuple[str, str, Any]] = []

    def before(*args: Any) -> None:
        seen.append(("before", args[2], args[3]))

    def after(*args: Any) -> None:
        seen.append(("after", args[2], args[3]))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)

    async def read(conn: AsyncConnection) -> None:
        await driver.rows(conn, select(literal(7)), {})

    try:
        await db.transact(read)
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
        await db.dispose()
    ours = [entry for entry in seen if entry[1].startswith("SELECT $1")]
    assert [(when, params) for when, _, params in ours] == [("before", (7,)), ("after", (7,))]


async def test_a_statement_canceled_in_its_begin_leaves_no_transaction_behind(
    postgres_url: str,
) -> None:
    """A statement canceled while its transaction's BEGIN is on its way (a worker
    session's loops are canceled when the session ends): asyncpg keeps that transaction as
    its connection's own (failed), and the server is in it. Back in the pool so, every
    later transaction on the connection would be a SAVEPOINT inside that one, its commit a
    RELEASE: its locks held and its writes never seen by anyone else, until the session
    dies (a chaos cell's stall: every claim and report group queued behind one such
    session, "idle in transaction" for minutes). As SQLAlchemy does for a statement it
    sends, the driver throws such a connection away."""
    db = Database(postgres_url, pool_size=1, max_overflow=0)
    canceled: list[Any] = []

    async def canceled_at_begin(conn: AsyncConnection) -> None:
        canceled.append((await conn.get_raw_connection()).driver_connection)
        send = asyncio.ensure_future(driver.rows(conn, select(literal(1)), {}))
        await asyncio.sleep(0)  # it runs until it waits for the BEGIN's answer
        send.cancel()
        await send

    try:
        with pytest.raises(asyncio.CancelledError):
            await db.transact(canceled_at_begin)
        assert canceled[0].is_closed()
        await db.transact(_create_table)
    finally:
        await db.dispose()
    assert await _table_seen(postgres_url)


async def test_a_connection_left_in_a_transaction_is_not_used_again(postgres_url: str) -> None:
    """Whatever leaves a pooled connection in a transaction (behind SQLAlchemy's back
    here), the pool's checkout replaces it: the next transaction commits for real."""
    db = Database(postgres_url, pool_size=1, max_overflow=0)

    async def left_open(conn: AsyncConnection) -> None:
        session: Any = (await conn.get_raw_connection()).driver_connection
        await session.execute("BEGIN")

    try:
        await db.transact(left_open)
        await db.transact(_create_table)
    finally:
        await db.dispose()
    assert await _table_seen(postgres_url)


async def _create_table(conn: AsyncConnection) -> None:
    await driver.send(conn, "CREATE TABLE after_cancel (x int)", ())


async def _table_seen(url: str) -> bool:
    """Whether another session sees _create_table's table (its transaction committed)."""
    other = await connect(url)
    try:
        return bool(await other.fetchval("SELECT to_regclass('after_cancel') IS NOT NULL"))
    finally:
        await other.close()
