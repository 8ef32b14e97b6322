"""SQLite statements run inline in the event loop's thread (jobtask.store.sqlite_inline):
a write that finds another process's write lock waits without blocking the loop, then
proceeds once the lock is released, or gives up with UNAVAILABLE after the busy timeout."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from jobtask.domain.errors import Unavailable
from jobtask.store import database
from jobtask.store.database import Database
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

HOLD = 3.0


async def insert_row(conn: AsyncConnection) -> int:
    await conn.execute(text("INSERT INTO t (x) VALUES (1)"))
    return int((await conn.execute(text("SELECT count(*) FROM t"))).scalar_one())


@contextlib.contextmanager
def other_process_writing(path: Path) -> Iterator[sqlite3.Connection]:
    """A second connection (as another process would) holding the file's write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield other
    finally:
        other.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    store = Database(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    await store.transact(lambda conn: conn.execute(text("CREATE TABLE t (x INTEGER)")))
    yield store
    await store.dispose()


async def test_a_write_waits_for_another_writer_while_the_loop_runs(
    db: Database, tmp_path: Path
) -> None:
    # The longest the loop went without running the ticker. SQLite's own busy handler
    # would hold it for as long as the other writer holds the lock (HOLD seconds).
    longest_stall = 0.0

    async def ticker() -> None:
        nonlocal longest_stall
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            longest_stall, last = max(longest_stall, now - last), now

    ticking = asyncio.create_task(ticker())
    try:
        with other_process_writing(tmp_path / "store.sqlite3") as other:
            write = asyncio.create_task(db.transact(insert_row))
            await asyncio.sleep(HOLD)
            assert not write.done(), "the write did not wait for the other writer's lock"
            other.execute("COMMIT")
            assert await asyncio.wait_for(write, 10) == 1
    finally:
        ticking.cancel()
    assert longest_stall < HOLD * 2 / 3, "the event loop was blocked while the write waited"


async def test_a_write_gives_up_with_unavailable_after_the_busy_timeout(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 200)
    with (
        other_process_writing(tmp_path / "store.sqlite3"),
        pytest.raises(Unavailable, match="busy"),
    ):
        await db.transact(insert_row)
    # The lock released, the same store writes again.
    assert await db.transact(insert_row) == 1
