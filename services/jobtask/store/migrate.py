"""Schema migrations (Alembic), safe to run from several replicas starting at once, and
where a database's schema stands against them, read without writing."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from jobtask.domain.errors import FailedPrecondition
from jobtask.store.database import Database, normalize_url
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "jobtask.store:migrations")
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    """The migrations, read once a process (each read parses every migration file)."""
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str | None:
    return _scripts().get_current_head()


@dataclass(frozen=True)
class Upgraded:
    """What one upgrade() found and left: the revisions before (None: no schema) and after."""

    before: str | None
    after: str | None

    def __str__(self) -> str:
        """What was done: created, upgraded from one revision, or nothing."""
        if self.before == self.after:
            return f"at {self.after}, nothing to migrate"
        if self.before is None:
            return f"created at {self.after}"
        return f"upgraded from {self.before} to {self.after}"


async def upgrade(db: Database, revision: str = "head") -> Upgraded:
    """Brings the schema to `revision`, in one transaction. Concurrent callers wait for each
    other. A schema at a revision this code does not know is refused (UnknownRevision) with
    nothing written."""
    config = alembic_config()
    async with db.ddl() as conn, db.migration_lock(conn):

        def run(sync_conn: Any) -> Upgraded:
            found = _revision_of(sync_conn)
            if standing(found) is Standing.UNKNOWN:
                raise UnknownRevision(db.shown_url, str(found))
            config.attributes["connection"] = sync_conn
            command.upgrade(config, revision)
            return Upgraded(found, _revision_of(sync_conn))

        done = await conn.run_sync(run)
        await conn.commit()
    return done


async def current_revision(db: Database) -> str | None:
    async with db.read() as conn:
        return await revision_in(conn)


async def revision_in(conn: AsyncConnection) -> str | None:
    """The revision the schema records, read on `conn` (None: no schema yet)."""
    return await conn.run_sync(_revision_of)


class Standing(enum.Enum):
    """A database's schema against this code's migrations."""

    CURRENT = "current"
    # An older revision of this code's, or no schema at all: `upgrade` brings it to the head.
    BEHIND = "behind"
    # A revision this code does not have: a newer jobtask migrated the database.
    UNKNOWN = "unknown"


class UnknownRevision(FailedPrecondition):
    """The database is at a revision this code does not have (Standing.UNKNOWN): a newer
    jobtask migrated it, and this one must neither migrate nor serve it."""

    def __init__(self, shown_url: str, revision: str) -> None:
        super().__init__(
            f"the database ({shown_url}) is at schema revision {revision}, which this jobtask"
            f" (head {head_revision()}) does not know: it was upgraded by a newer jobtask;"
            " run that version"
        )
        self.revision = revision


def standing(revision: str | None) -> Standing:
    if revision == head_revision():
        return Standing.CURRENT
    if revision is None or revision in {s.revision for s in _scripts().walk_revisions()}:
        return Standing.BEHIND
    return Standing.UNKNOWN


async def stored_revision(url: str) -> str | None:
    """The revision the database at `url` records (None: no schema yet), read without
    writing: Database(url) would create a missing SQLite file and switch it to WAL, so
    SQLite is opened read-only (a missing file has no schema), PostgreSQL in a READ ONLY
    transaction. Database errors are the driver's, untranslated, for the CLI to show."""
    url = normalize_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_revision(make_url(url).database or "")
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SET TRANSACTION READ ONLY"))
            return await conn.run_sync(_revision_of)
    finally:
        await engine.dispose()


def _sqlite_revision(path: str) -> str | None:
    if path in ("", ":memory:") or not Path(path).exists():
        return None
    # mode=ro: SQLite itself refuses every write, the file's and the journal's.
    engine = create_engine(
        f"sqlite+pysqlite:///file:{quote(str(Path(path).absolute()))}?mode=ro&uri=true",
        poolclass=NullPool,
    )
    try:
        with engine.connect() as conn:
            return _revision_of(conn)
    finally:
        engine.dispose()


def _revision_of(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()
