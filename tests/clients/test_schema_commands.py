"""`jobtask db current` reads where a database's schema stands and writes nothing, as a real
subprocess on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from jobtask.store import migrate
from jobtask.store.database import Database
from sqlalchemy.engine import make_url

from tests.clients.conftest import run_once

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

OLDER = "0023"
HEAD = migrate.head_revision()
# `jobtask db current`'s exit statuses (jobtask.cli.schema), spelled here as documented.
PENDING, UNKNOWN = 3, 4


async def migrated_to(url: str, revision: str) -> str:
    db = Database(url)
    try:
        await migrate.upgrade(db, revision)
    finally:
        await db.dispose()
    return url


async def revision_of(url: str) -> str | None:
    db = Database(url)
    try:
        return await migrate.current_revision(db)
    finally:
        await db.dispose()


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_db_current_reads_a_sqlite_file_without_writing_it(tmp_path: Path) -> None:
    path = tmp_path / "jobtask.sqlite3"
    url = await migrated_to(f"sqlite:///{path}", OLDER)
    before = fingerprint(path)
    code, said = await run_once("db", "current", "--database-url", str(path))
    assert code == PENDING, said
    assert f"schema:   {OLDER}\ncode:     {HEAD}\nupgrade pending" in said, said
    assert fingerprint(path) == before
    assert await revision_of(url) == OLDER

    assert (await run_once("db", "upgrade", "--database-url", str(path)))[0] == 0
    code, said = await run_once("db", "current", "--database-url", str(path))
    assert code == 0, said
    assert f"schema:   {HEAD}\ncode:     {HEAD}\nup to date" in said, said


async def test_db_current_says_a_missing_file_is_uninitialised_and_leaves_it_missing(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nothing-here.sqlite3"
    code, said = await run_once("db", "current", "--database-url", str(missing))
    assert code == PENDING, said
    assert "schema:   none (uninitialised)" in said, said
    assert names(tmp_path) == []


async def test_db_current_names_a_revision_a_newer_jobtask_wrote(tmp_path: Path) -> None:
    path = tmp_path / "jobtask.sqlite3"
    await migrated_to(f"sqlite:///{path}", "head")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    code, said = await run_once("db", "current", "--database-url", str(path))
    assert code == UNKNOWN, said
    assert "schema:   9999" in said and "a newer jobtask" in said, said


@pytest.mark.postgres
async def test_db_current_leaves_an_older_postgresql_schema_where_it_is(
    empty_postgres_url: str,
) -> None:
    """Uninitialised, then at an older revision: each said, nothing migrated, and the
    password never printed."""
    url = make_url(empty_postgres_url)
    assert url.password, "JOBTASK_TEST_POSTGRES_URL needs a password for this test"
    hidden = url.render_as_string(hide_password=True)
    code, said = await run_once("db", "current", "--database-url", empty_postgres_url)
    assert code == PENDING, said
    assert f"database: {hidden}\nschema:   none (uninitialised)" in said, said
    assert f":{url.password}@" not in said
    assert await revision_of(empty_postgres_url) is None

    await migrated_to(empty_postgres_url, OLDER)
    code, said = await run_once("db", "current", "--database-url", empty_postgres_url)
    assert code == PENDING, said
    assert f"schema:   {OLDER}\ncode:     {HEAD}\nupgrade pending" in said, said
    assert await revision_of(empty_postgres_url) == OLDER
