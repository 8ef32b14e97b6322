"""Where a database's schema stands, as real subprocesses see it on a real SQLite file and a
real PostgreSQL database: `jobtask db current` reads it and writes nothing; the token
commands create a new database's schema but refuse one at another revision, writing nothing;
the servers and `jobtask db upgrade` refuse a newer jobtask's schema, writing nothing; a server
brings an older schema to its own revision before it serves, saying so in one line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest
from jobtask.store import migrate
from jobtask.store.database import Database
from sqlalchemy.engine import make_url

from tests.clients.conftest import run_once
from tests.conftest import _asyncpg_dsn, start_jobtask

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

OLDER = "0023"
NEWER = "9999"  # no jobtask's revision: what an older jobtask sees of a newer one's schema
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


def stamp_newer(path: Path) -> None:
    """A newer jobtask's schema, as far as this one can tell: a revision it does not have."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(f"UPDATE alembic_version SET version_num = '{NEWER}'")


def newer_refusal(shown: str) -> str:
    """The one line every command that would migrate or write refuses a newer schema with."""
    return (
        f"jobtask: error: the database ({shown}) is at schema revision {NEWER}, which this"
        f" jobtask (head {HEAD}) does not know: it was upgraded by a newer jobtask; run that"
        " version"
    )


async def test_db_current_names_a_revision_a_newer_jobtask_wrote(tmp_path: Path) -> None:
    path = tmp_path / "jobtask.sqlite3"
    await migrated_to(f"sqlite:///{path}", "head")
    stamp_newer(path)
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


def refusal(said: str, shown: str, revision: str) -> str:
    """The token commands' one line refusing a schema at another revision."""
    (line,) = [line for line in said.splitlines() if line.strip()]
    assert line.startswith(f"jobtask: error: {shown}: schema at revision {revision}, "), said
    return line


async def test_token_commands_refuse_an_older_or_newer_sqlite_schema(tmp_path: Path) -> None:
    path = tmp_path / "jobtask.sqlite3"
    await migrated_to(f"sqlite:///{path}", OLDER)
    before = fingerprint(path)
    for command in ("create", "list"):
        code, said = await run_once("token", command, "--database-url", str(path))
        assert code == 1, said
        line = refusal(said, f"sqlite:///{path}", OLDER)
        assert line.endswith(f"this jobtask's at {HEAD}: run `jobtask db upgrade` first"), said
    assert fingerprint(path) == before

    stamp_newer(path)
    before = fingerprint(path)
    code, said = await run_once("token", "create", "--database-url", str(path))
    assert code == 1, said
    assert said.strip() == newer_refusal(f"sqlite:///{path}"), said
    assert fingerprint(path) == before


async def _sql(url: str, statement: str) -> Any:
    """One statement on its own connection: its first value, if any."""
    conn = await asyncpg.connect(_asyncpg_dsn(url, make_url(url).database or ""))
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()


async def _count(url: str, table: str) -> int:
    return int(await _sql(url, f"SELECT count(*) FROM {table}"))


@pytest.mark.postgres
async def test_token_create_makes_a_new_postgresql_databases_schema(
    empty_postgres_url: str,
) -> None:
    """A database with no schema gets one, as `jobtask up`'s first run makes it."""
    code, said = await run_once("token", "create", "--database-url", empty_postgres_url)
    assert code == 0, said
    assert said.startswith("v2/"), said  # stdout first: the token alone
    assert await revision_of(empty_postgres_url) == HEAD


@pytest.mark.postgres
async def test_token_create_refuses_an_older_postgresql_schema(empty_postgres_url: str) -> None:
    """Left at its revision, with no token or user written."""
    await migrated_to(empty_postgres_url, OLDER)
    code, said = await run_once("token", "create", "--database-url", empty_postgres_url)
    assert code == 1, said
    shown = make_url(empty_postgres_url).render_as_string(hide_password=True)
    assert refusal(said, shown, OLDER).endswith("run `jobtask db upgrade` first"), said
    assert await revision_of(empty_postgres_url) == OLDER
    assert await _count(empty_postgres_url, "api_client_authorizations") == 0
    assert await _count(empty_postgres_url, "users") == 0


# What starts the servers or migrates: each would run Alembic on the schema (jobtask up's
# ports are 0 and its gateway off, so that one it failed to refuse could not clash).
MIGRATING = (
    ("up", "--jobs-listen", "127.0.0.1:0", "--tasks-listen", "127.0.0.1:0", "--no-gateway"),
    ("serve", "jobs", "--jobs-listen", "127.0.0.1:0"),
    ("serve", "tasks", "--tasks-listen", "127.0.0.1:0"),
    ("db", "upgrade"),
)


async def test_servers_and_db_upgrade_refuse_a_sqlite_schema_a_newer_jobtask_wrote(
    tmp_path: Path,
) -> None:
    """One line naming both revisions, exit 1, and the file as it was: no WAL left beside
    it, no admin token made (up), the newer revision still recorded."""
    path = tmp_path / "jobtask.sqlite3"
    await migrated_to(f"sqlite:///{path}", "head")
    stamp_newer(path)
    before = fingerprint(path)
    for command in MIGRATING:
        code, said = await run_once(*command, "--database-url", str(path))
        assert (code, said.strip()) == (1, newer_refusal(f"sqlite:///{path}")), command
        assert fingerprint(path) == before, command
        assert names(tmp_path) == ["jobtask.sqlite3"], command
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(NEWER,)]


@pytest.mark.postgres
async def test_servers_and_db_upgrade_refuse_a_postgresql_schema_a_newer_jobtask_wrote(
    empty_postgres_url: str,
) -> None:
    """The same on PostgreSQL, the password never printed, no user or token written."""
    await migrated_to(empty_postgres_url, "head")
    await _sql(empty_postgres_url, f"UPDATE alembic_version SET version_num = '{NEWER}'")
    url = make_url(empty_postgres_url)
    assert url.password, "JOBTASK_TEST_POSTGRES_URL needs a password for this test"
    for command in MIGRATING:
        code, said = await run_once(*command, "--database-url", empty_postgres_url)
        expected = newer_refusal(url.render_as_string(hide_password=True))
        assert (code, said.strip()) == (1, expected), command
        assert f":{url.password}@" not in said
    assert await _count(empty_postgres_url, "api_client_authorizations") == 0
    assert await _count(empty_postgres_url, "users") == 0
    assert await revision_of(empty_postgres_url) == NEWER


@contextlib.asynccontextmanager
async def serving(part: str, url: str) -> AsyncIterator[list[str]]:
    """`jobtask serve <part>` on `url` as a real process: what it wrote (stdout and stderr)
    up to its banner's `schema:` line; killed at the end."""
    proc = await start_jobtask(
        "serve",
        part,
        f"--{part}-listen",
        "127.0.0.1:0",
        "--database-url",
        url,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "GRPC_VERBOSITY": "NONE", "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while not lines or not lines[-1].startswith("schema:"):
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, f"jobtask serve {part} exited: {lines}"
            lines.append(line.rstrip("\n"))
        yield lines
    finally:
        proc.kill()
        await proc.wait()


def said_schema(lines: list[str], shown: str) -> str:
    """What a server's banner says of its database's schema (after naming the database)."""
    assert lines[-2:-1] == [f"database: {shown}"], lines
    return lines[-1]


async def test_a_server_creates_or_upgrades_a_sqlite_schema_before_it_serves_and_says_so(
    tmp_path: Path,
) -> None:
    """No file: the schema created; an older one: upgraded; the head: left as it is."""
    path = tmp_path / "jobtask.sqlite3"
    url = f"sqlite:///{path}"
    async with serving("jobs", str(path)) as lines:
        assert said_schema(lines, url) == f"schema: created at {HEAD}", lines
    path.unlink()
    await migrated_to(url, OLDER)
    async with serving("jobs", str(path)) as lines:
        assert said_schema(lines, url) == f"schema: upgraded from {OLDER} to {HEAD}", lines
        assert await revision_of(url) == HEAD
    async with serving("tasks", str(path)) as lines:
        assert said_schema(lines, url) == f"schema: at {HEAD}, nothing to migrate", lines


@pytest.mark.postgres
async def test_a_server_upgrades_an_older_postgresql_schema_and_says_so(
    empty_postgres_url: str,
) -> None:
    """Said with the password hidden, and the schema at this jobtask's revision."""
    await migrated_to(empty_postgres_url, OLDER)
    url = make_url(empty_postgres_url)
    shown = url.render_as_string(hide_password=True)
    async with serving("tasks", empty_postgres_url) as lines:
        assert said_schema(lines, shown) == f"schema: upgraded from {OLDER} to {HEAD}", lines
        assert not [line for line in lines if f":{url.password}@" in line], lines
        assert await revision_of(empty_postgres_url) == HEAD
