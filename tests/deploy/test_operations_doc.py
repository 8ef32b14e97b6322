"""docs/operations.md's backup and restore commands, run as written (a shell each line) on a
real SQLite file a live server writes to, and on a real PostgreSQL database: the guide says
only what works."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import sys
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest
from jobtask.manager.context import Settings
from jobtask.manager.tokens import issue_token
from jobtask.store.database import Database
from sqlalchemy.engine import make_url

from tests.conftest import (
    ROOT,
    _asyncpg_dsn,
    drop_postgres_database,
    running_cluster,
)
from tests.core.helpers import create_job

DOC = ROOT / "docs" / "operations.md"
# The guide's PostgreSQL URLs: postgresql://jobtask:secret@db/<database>.
DOC_URL = re.compile(r"postgresql://jobtask:secret@db/(\w+)")

pytestmark = pytest.mark.timeout(120)


def blocks(section: str) -> list[list[str]]:
    """The command lines of each ```sh block of the section, comment lines left out."""
    text = DOC.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    return [[line for line in b.splitlines() if line and not line.startswith("#")] for b in found]


async def shell(line: str, cwd: Path) -> str:
    """One documented command line, with this checkout's `jobtask` first on the PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        line,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PATH": path, "GRPC_VERBOSITY": "NONE"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"{line}\n{out.decode()}"
    return out.decode()


def jobs_in(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])


async def test_the_sqlite_backup_and_restore_work_as_written(tmp_path: Path) -> None:
    backup, restore = blocks("Backups and restores")[:2]
    live = tmp_path / "jobtask.sqlite3"
    async with running_cluster(f"sqlite:///{live}") as cluster:
        await cluster.jobs.CreateJob(create_job(script="kept.py"))
        said = [await shell(line, tmp_path) for line in backup]
        await cluster.jobs.CreateJob(create_job(script="after-the-backup.py"))
    assert "ok" in said[2] and "up to date" in said[3], said
    assert jobs_in(tmp_path / "jobtask-backup.sqlite3") == 1
    for line in restore:
        await shell(line, tmp_path)
    assert jobs_in(live) == 1


def named(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@pytest.mark.postgres
async def test_the_postgresql_dump_and_restore_work_as_written(
    postgres_url: str, tmp_path: Path
) -> None:
    (commands,) = blocks("Backups and restores")[2:]
    db = Database(postgres_url)
    try:
        await issue_token(db, Settings())
    finally:
        await db.dispose()
    source = make_url(postgres_url).database or ""
    restored = f"{source}_restored"
    names = {"jobtask": source, "jobtask_restored": restored}

    def here(match: re.Match[str]) -> str:
        return named(postgres_url, names.get(match.group(1), match.group(1)))

    try:
        # (createdb names the new database as a word, not in a URL.)
        local = [re.sub(r"\bjobtask_restored\b", restored, DOC_URL.sub(here, c)) for c in commands]
        said = [await shell(line, tmp_path) for line in local]
        assert "up to date" in said[-1], said
        conn = await asyncpg.connect(_asyncpg_dsn(postgres_url, restored))
        try:
            assert await conn.fetchval("SELECT count(*) FROM api_client_authorizations") == 1
        finally:
            await conn.close()
    finally:
        await drop_postgres_database(
            make_url(postgres_url).set(database=restored).render_as_string(hide_password=False)
        )
