"""A flush's array parameters (jobtask.store.flush_sql._PgStatement.array): a column of text
goes as one joined text, a column of integers as one array literal, and anything either
form could not carry exactly (a NULL, text holding the separator, one empty text, a value
of another type) as the array asyncpg encodes. Whatever the form, PostgreSQL must read back
the very values given, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest
from jobtask.store.flush_sql import _PgStatement
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from tests.core.raw_rows import session

pytestmark = pytest.mark.postgres

SEP = "\x1f"


@pytest.fixture
async def conn(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with session(postgres_url) as c:
        yield c


async def _round_trip(
    conn: asyncpg.Connection, values: list[Any], array_type: str
) -> tuple[list[Any], Any]:
    """The values as PostgreSQL reads them back, and the parameter they were sent as."""
    st = _PgStatement(PGDialect_asyncpg())
    expr = st.array(values, array_type)
    [param] = st.params
    back = await conn.fetchval(f"SELECT array(SELECT x FROM unnest({expr}) AS x)", param)
    return list(back), param


TEXTS = [
    ["zzzzz-ot0gb-aaaaaaaaaaaaaaa", "zzzzz-ot0gb-bbbbbbbbbbbbbbb"],
    ['{"log":"a \\"quoted\\" line\\n","id":3}', "{}", "", "é ü 漢字 🙂"],
    ["", "x"],
    ["one"],
]


@pytest.mark.parametrize("values", TEXTS)
@pytest.mark.parametrize("array_type", ["VARCHAR(64)[]", "TEXT[]", "text[]"])
async def test_text_goes_joined_and_comes_back_whole(
    conn: asyncpg.Connection, values: list[str], array_type: str
) -> None:
    back, param = await _round_trip(conn, values, array_type)
    assert back == values
    assert isinstance(param, str)
    assert param == SEP.join(values)


@pytest.mark.parametrize(
    "values",
    [
        ["a", None, "b"],  # a NULL
        ["a", f"b{SEP}c"],  # the separator itself, in a task's log, say
        [""],  # one empty text would split into none
        [],  # (nothing to encode anyway)
    ],
    ids=["null", "separator", "one-empty", "none"],
)
async def test_what_the_joined_text_cannot_carry_goes_as_the_array(
    conn: asyncpg.Connection, values: list[Any]
) -> None:
    back, param = await _round_trip(conn, values, "TEXT[]")
    assert back == values
    assert param == values


@pytest.mark.parametrize("array_type", ["BIGINT[]", "INTEGER[]", "integer[]", "bigint[]"])
async def test_integers_go_as_one_literal(conn: asyncpg.Connection, array_type: str) -> None:
    values = [3, -7, 0, 2**31 - 1] if "INT" in array_type.upper() else []
    if array_type.upper() == "BIGINT[]":
        values.append(2**62)
    back, param = await _round_trip(conn, values, array_type)
    assert back == values
    assert param == "{" + ",".join(map(str, values)) + "}"


@pytest.mark.parametrize(
    ("values", "array_type"),
    [([1, None, 3], "BIGINT[]"), ([1, True], "BIGINT[]"), ([1.5, 2.5], "DOUBLE PRECISION[]")],
    ids=["null", "a-bool", "floats"],
)
async def test_other_columns_go_as_the_array(
    conn: asyncpg.Connection, values: list[Any], array_type: str
) -> None:
    back, param = await _round_trip(conn, values, array_type)
    assert back == values
    assert param == values
