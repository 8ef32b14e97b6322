"""A canceled transaction ends its task as canceled: the cancellation is not replaced by
another error on the way out (PostgreSQL invalidates the connection mid-statement; touching it
afterwards raised PendingRollbackError, which kept the change feed's pruner looping after
`Services.stop` canceled it, and hung every shutdown that caught it mid-prune)."""

from __future__ import annotations

import asyncio

import pytest
from jobtask.store.database import Database
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.polling import DEADLINE


async def test_a_canceled_transaction_stays_canceled(database_url: str) -> None:
    db = Database(database_url)
    started = asyncio.Event()

    async def slow(conn: AsyncConnection) -> None:
        started.set()
        if db.is_sqlite:
            await asyncio.sleep(DEADLINE)
        else:
            await conn.execute(text("SELECT pg_sleep(30)"))

    try:
        task = asyncio.create_task(db.transact(slow))
        await asyncio.wait_for(started.wait(), DEADLINE)
        await asyncio.sleep(0.1)  # inside the statement
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, DEADLINE)
    finally:
        await db.dispose()
