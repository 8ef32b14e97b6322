"""`Database(url)` opens the backend the URL names; the rest of the code sees one interface."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobtask.store.database import Database, PostgresDatabase, SQLiteDatabase


async def test_a_sqlite_url_opens_the_sqlite_backend(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        assert isinstance(db, SQLiteDatabase)
        assert db.is_sqlite
        assert not db.notifies  # each process polls the change feed
        assert db.pool_usage() is None
    finally:
        await db.dispose()


async def test_a_postgresql_url_opens_the_postgresql_backend() -> None:
    # Opening the pool connects lazily: no server is needed to tell the backend.
    db = Database("postgresql://jobtask@127.0.0.1:1/none")
    try:
        assert isinstance(db, PostgresDatabase)
        assert not db.is_sqlite
        assert db.notifies  # LISTEN/NOTIFY
        assert db.pool_usage() == (0, 0)
    finally:
        await db.dispose()


def test_other_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        Database("mysql://localhost/jobtask")
