"""SQLite's WAL is copied back into the database file by a thread of its own
(jobtask.store.sqlite_inline.Checkpoints), not by the event loop's commits: SQLite itself
checkpoints on the commit that takes the WAL past 1,000 pages, so one commit in a few
hundred copied and synced megabytes while the loop -- the server's one core -- waited."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from jobtask.store.database import Database
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.polling import eventually

# Pages written by one transaction: fewer than SQLite's own checkpoint threshold (1,000).
ROWS = 300
ROW = "x" * 3000


async def test_the_wal_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    db = Database(f"sqlite:///{path}")
    try:
        await db.transact(lambda conn: conn.execute(text("CREATE TABLE t (x TEXT)")))
        before = path.stat().st_size

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(text("INSERT INTO t (x) VALUES (:x)"), [{"x": ROW}] * ROWS)

        await db.transact(write)

        async def grown() -> bool:
            # Commits go on meanwhile (each may start a checkpoint, at most every
            # CHECKPOINT_SECONDS); the database file grows once the WAL is copied into it.
            await db.transact(lambda conn: conn.execute(text("INSERT INTO t (x) VALUES ('')")))
            return path.stat().st_size > before + ROWS * len(ROW)

        await eventually(grown)
        assert any(t.name.startswith("jobtask-checkpoint") for t in threading.enumerate())
        # The checkpoints never hold the database for anyone: a writer of another process
        # still gets its write lock.
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
    finally:
        await db.dispose()
