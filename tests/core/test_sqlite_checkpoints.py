"""SQLite's WAL is copied back into the database file by a thread of its own
(jobtask.store.sqlite_inline.Checkpoints), not by the event loop's commits: SQLite itself
checkpoints on the commit that takes the WAL past 1,000 pages, so one commit in a few
hundred copied and synced megabytes while the loop -- the server's one core -- waited."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from jobtask.store.database import Database
from jobtask.store.sqlite_inline import CHECKPOINT_SECONDS, Checkpoints
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


async def test_a_disposed_database_leaves_no_checkpoint_running(tmp_path: Path) -> None:
    """A checkpoint a commit started may still be running (or waiting for its thread) when
    the Database is disposed: dispose waits for it, so that nothing of this process touches
    the file afterwards (a test comparing the file's bytes before and after a command that
    must not write it failed once in CI, the setup's own checkpoint landing in between)."""
    path = tmp_path / "store.sqlite3"
    db = Database(f"sqlite:///{path}")
    await db.transact(lambda conn: conn.execute(text("CREATE TABLE t (x TEXT)")))
    # The checkpoint thread kept busy, so that the next commit's checkpoint waits behind it.
    release = threading.Event()
    busy = Checkpoints._pool().submit(release.wait)
    try:
        await asyncio.sleep(CHECKPOINT_SECONDS)  # (one may start again)
        await db.transact(lambda conn: conn.execute(text("INSERT INTO t (x) VALUES ('y')")))
        disposing = asyncio.create_task(db.dispose())
        await asyncio.sleep(0.2)
        assert not disposing.done(), "dispose returned with a checkpoint still to run"
    finally:
        release.set()
    busy.result()
    await asyncio.wait_for(disposing, 10)
    # The last connection (the checkpoint's) closed: the WAL went into the file, and is gone.
    assert not (tmp_path / "store.sqlite3-wal").exists()
    before = path.read_bytes()
    await asyncio.sleep(0.2)
    assert path.read_bytes() == before
