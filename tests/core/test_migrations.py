"""The Alembic migrations produce exactly the schema the code declares, on both stores,
and running them again (as a second replica starting would) changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from jobtask.store import migrate
from jobtask.store.database import Database
from jobtask.store.schema import metadata


async def test_migrations_match_the_schema(database_url: str) -> None:
    db = Database(database_url)
    try:
        await asyncio.gather(migrate.upgrade(db), migrate.upgrade(db))
        assert await migrate.current_revision(db) == migrate.head_revision()
        async with db.ddl() as conn:

            def diff(sync_conn: Any) -> list[Any]:
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return list(compare_metadata(context, metadata))

            assert await conn.run_sync(diff) == []
    finally:
        await db.dispose()
