"""A read on PostgreSQL sends its statements alone, each its own transaction (autocommit):
no BEGIN and ROLLBACK around them, two round trips of every read. A snapshot keeps its one
transaction, and the pooled connection goes back to transactions for the writes after it."""

from __future__ import annotations

import datetime as dt

import pytest
from jobtask.domain.errors import InvalidArgument
from jobtask.store.database import Database
from jobtask.store.migrate import upgrade
from jobtask.store.schema import users
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

pytestmark = pytest.mark.postgres

# The id of the statement's transaction (assigned by the call).
_XID = text("SELECT pg_current_xact_id()::text")


async def test_a_read_sends_no_begin_and_a_snapshot_keeps_its_transaction(
    postgres_url: str,
) -> None:
    # One connection: the writes below run on the very connection the reads used.
    db = Database(postgres_url, pool_size=1, max_overflow=0)
    await upgrade(db)
    try:
        async with db.read() as conn:
            first = (await conn.execute(_XID)).scalar()
            assert (await conn.execute(_XID)).scalar() != first

        async with db.snapshot() as conn:
            first = (await conn.execute(_XID)).scalar()
            assert (await conn.execute(_XID)).scalar() == first

        async def write_then_fail(conn: AsyncConnection) -> None:
            now = dt.datetime.now(dt.UTC)
            user = {"uuid": "zzzzz-tpzed-00000000000000x", "created_at": now, "modified_at": now}
            await conn.execute(insert(users).values(**user))
            raise InvalidArgument("user", "refused after its insert")

        with pytest.raises(InvalidArgument):
            await db.transact(write_then_fail)
        async with db.read() as conn:
            count = select(func.count()).where(users.c.uuid == "zzzzz-tpzed-00000000000000x")
            assert (await conn.execute(count)).scalar() == 0
    finally:
        await db.dispose()
