"""The SQLAlchemy engines behind a Database, for tests that listen to what it sends."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from jobtask.store.database import Database
from sqlalchemy import Engine, event
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


# Set while a counted call runs: the server's background loops (the reaper, the feed's
# poll, the worker registry) send statements of their own meanwhile, in other contexts.
_COUNTED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("counted", default=None)


@contextlib.contextmanager
def counting(db: Database, width: int = 90) -> Iterator[list[str]]:
    """The SQL statements `db` sends for calls made in this context while the block runs
    (on every engine it holds), each cut to its first `width` characters."""
    seen: list[str] = []
    engines = engines_of(db)

    def record(*args: Any) -> None:
        counted = _COUNTED.get()
        if counted is not None:
            counted.append(" ".join(str(args[2]).split())[:width])

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    token = _COUNTED.set(seen)
    try:
        yield seen
    finally:
        _COUNTED.reset(token)
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
