"""Schema migrations (Alembic), safe to run from several replicas starting at once."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from jobtask.store.database import Database


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "jobtask.store:migrations")
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(db: Database, revision: str = "head") -> None:
    """Brings the schema to `revision`. Concurrent callers wait for each other."""
    config = alembic_config()
    async with db.ddl() as conn, db.migration_lock(conn):

        def run(sync_conn: Any) -> None:
            config.attributes["connection"] = sync_conn
            command.upgrade(config, revision)

        await conn.run_sync(run)
        await conn.commit()


async def current_revision(db: Database) -> str | None:
    async with db.read() as conn:

        def get(sync_conn: Any) -> str | None:
            return MigrationContext.configure(sync_conn).get_current_revision()

        return await conn.run_sync(get)
