"""The guard's test of the rows it holds (jobtask.store.flush_sql._PgStatement.matches): the
held rows must be exactly the rows the writes read -- every key there, no other, and each
column equal (NULL equal to NULL) -- whether a column goes as an array (values that differ)
or as one value all rows share. Checked on PostgreSQL against a table standing for the
guard's held_tasks CTE."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest
from jobtask.store.flush_sql import _PgStatement
from jobtask.store.schema import job_tasks
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from tests.core.raw_rows import session

pytestmark = pytest.mark.postgres

COLUMNS = ("id", "version", "lease_id", "lease_expires_at")
T0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(seconds=30)
Row = tuple[int, int, str | None, dt.datetime | None]


@pytest.fixture
async def conn(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with session(postgres_url) as c:
        await c.execute(
            "CREATE TEMP TABLE held (id bigint, version integer, lease_id varchar(64),"
            " lease_expires_at timestamptz)"
        )
        yield c


async def _matches(
    conn: asyncpg.Connection,
    held: Sequence[tuple[Any, ...]],
    rows: Sequence[Row],
    *,
    keys: bool = False,
) -> Any:
    await conn.execute("TRUNCATE held")
    await conn.executemany("INSERT INTO held VALUES ($1, $2, $3, $4)", held)
    st = _PgStatement(PGDialect_asyncpg())
    given = st._param([r[0] for r in rows], "bigint[]") if keys else ""
    test = st.matches(job_tasks, COLUMNS, rows, "held", keys=given)
    return await conn.fetchval(f"SELECT {test}", *st.params)


# Versions that differ (sent as arrays), leases of which one is NULL.
MIXED: list[Row] = [(3, 2, "a", T1), (5, 4, None, None), (9, 2, "c", T1)]
# Everything but the id shared (sent as one value each).
SHARED: list[Row] = [(3, 2, "l", T1), (5, 2, "l", T1), (9, 2, "l", T1)]


@pytest.mark.parametrize("rows", [MIXED, SHARED], ids=["arrays", "one-value"])
@pytest.mark.parametrize("keys", [False, True], ids=["keys-sent", "keys-given"])
async def test_the_same_rows_match(conn: asyncpg.Connection, rows: list[Row], keys: bool) -> None:
    assert await _matches(conn, list(reversed(rows)), rows, keys=keys) is True


@pytest.mark.parametrize("rows", [MIXED, SHARED], ids=["arrays", "one-value"])
@pytest.mark.parametrize("column", [1, 2, 3], ids=["version", "lease_id", "lease_end"])
async def test_any_column_that_moved_fails(
    conn: asyncpg.Connection, rows: list[Row], column: int
) -> None:
    for i in range(len(rows)):
        moved: list[Any] = list(rows[i])
        moved[column] = {1: 7, 2: "other", 3: T0}[column]
        held = [*rows[:i], tuple(moved), *rows[i + 1 :]]
        assert await _matches(conn, held, rows) is False, (i, held)
        # NULL against a value, and a value against NULL, differ too.
        if column > 1:
            moved[column] = None
            nulled = [*rows[:i], tuple(moved), *rows[i + 1 :]]
            if nulled != rows:
                assert await _matches(conn, nulled, rows) is False, (i, nulled)


@pytest.mark.parametrize("rows", [MIXED, SHARED], ids=["arrays", "one-value"])
@pytest.mark.parametrize("keys", [False, True], ids=["keys-sent", "keys-given"])
async def test_a_missing_or_an_extra_row_fails(
    conn: asyncpg.Connection, rows: list[Row], keys: bool
) -> None:
    assert await _matches(conn, rows[1:], rows, keys=keys) is False
    assert await _matches(conn, rows[:-1], rows, keys=keys) is False
    assert await _matches(conn, [*rows, (11, 2, "l", T1)], rows, keys=keys) is False
    assert await _matches(conn, [], rows, keys=keys) is False


async def test_no_rows_match_only_nothing_held(conn: asyncpg.Connection) -> None:
    assert await _matches(conn, [], []) is True
    assert await _matches(conn, SHARED[:1], []) is False
