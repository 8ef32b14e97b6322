"""The SQLAlchemy engines behind a Database, for tests that listen to what it sends."""

from __future__ import annotations

from jobtask.store.database import Database
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine


def engines_of(db: Database) -> list[Engine]:
    """Every engine `db` holds (the sync engine of an async one), whichever its backend."""
    found = [
        value.sync_engine if isinstance(value, AsyncEngine) else value
        for value in vars(db).values()
        if isinstance(value, (Engine, AsyncEngine))
    ]
    assert found, "the database holds no engine"
    return found
