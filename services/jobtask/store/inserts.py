"""Rows inserted many at a time and not read back: the INSERT returns each row's id, and the
row as written is what was given, that id and the schema's server defaults. (RETURNING every
column cost SQLAlchemy its whole row processing, JSON documents decoded, for values the
caller already holds.)"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

from jobtask.store import driver, flush_sql
from sqlalchemy import Insert, Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection

R = TypeVar("R")


@functools.cache
def server_defaults(table: Table) -> dict[str, Any]:
    """What the database writes into a new row's columns left out: a column's server
    default (the schema's), else NULL."""
    out: dict[str, Any] = {}
    for column in table.c:
        arg = getattr(column.server_default, "arg", None)
        kind = column.type.python_type
        if arg is None:
            out[column.name] = None
        elif kind is bool:  # (bool("0") is True)
            out[column.name] = str(arg).lower() in ("1", "true")
        else:
            out[column.name] = kind(str(arg))
    return out


@functools.cache
def _insert(table: Table) -> Insert:
    # Not sort_by_parameter_order: SQLite has no sentinel for it and SQLAlchemy then sends
    # one INSERT per row. The ids come back in any order and are matched by uuid.
    return insert(table).returning(table.c.uuid, table.c.id)


async def insert_rows(
    conn: AsyncConnection,
    table: Table,
    rows: list[dict[str, Any]],
    build: Callable[[dict[str, Any]], R],
) -> list[R]:
    """New rows of `table` (each with its uuid), in one INSERT whatever their number; the
    rows as written, in the given order. `build` makes each from a new dict of every column
    by name, in table order (server_defaults' order), which it may keep
    (rows.job_of_columns)."""
    if not rows:
        return []
    columns = tuple(rows[0])
    ids: dict[str, int]
    uniform = all(row.keys() == rows[0].keys() for row in rows)
    if uniform and conn.dialect.name == "sqlite":
        ids = await _insert_sqlite(conn, table, columns, rows)
    elif uniform and conn.dialect.name == "postgresql":
        ids = await _insert_postgres(conn, table, columns, rows)
    else:
        ids = dict(tuple(r) for r in await conn.execute(_insert(table), rows))
    defaults = server_defaults(table)
    return [build({**defaults, **row, "id": ids[row["uuid"]]}) for row in rows]


# SQLite's limit on one statement's parameters (SQLITE_MAX_VARIABLE_NUMBER since 3.32).
_SQLITE_MAX_PARAMETERS = 32_766


@functools.lru_cache(maxsize=64)
def _sqlite_insert(table: Table, columns: tuple[str, ...], count: int) -> str:
    names = ", ".join(f'"{name}"' for name in columns)
    rows = ", ".join(["(" + ", ".join("?" for _ in columns) + ")"] * count)
    return f"INSERT INTO {table.name} ({names}) VALUES {rows} RETURNING uuid, id"


async def _insert_sqlite(
    conn: AsyncConnection, table: Table, columns: tuple[str, ...], rows: list[dict[str, Any]]
) -> dict[str, int]:
    """The rows (all with the same columns) inserted at the driver's level, as many to a
    statement as SQLite takes: the INSERT SQLAlchemy sends, without its per-value work
    (values converted by the same bind processors: jobtask.store.flush_sql.driver_rows);
    each row's id by uuid."""
    values = flush_sql.driver_rows(
        conn.dialect, table, columns, flush_sql.columns_of(rows, columns)
    )
    per_statement = max(1, _SQLITE_MAX_PARAMETERS // len(columns))
    ids: dict[str, int] = {}
    for start in range(0, len(values), per_statement):
        chunk = values[start : start + per_statement]
        flat = tuple(itertools.chain.from_iterable(chunk))
        result = await conn.exec_driver_sql(_sqlite_insert(table, columns, len(chunk)), flat)
        # Each row a (uuid, id) pair, fetched at once (not a fetchone a row).
        ids.update(result.all())  # type: ignore[arg-type]
    return ids


async def _insert_postgres(
    conn: AsyncConnection, table: Table, columns: tuple[str, ...], rows: list[dict[str, Any]]
) -> dict[str, int]:
    """The rows (all with the same columns) as one INSERT ... SELECT FROM unnest(...) at the
    driver's level (jobtask.store.flush_sql.pg_insert); each row's id by uuid."""
    sql, params = flush_sql.pg_insert(
        conn.dialect, table, columns, flush_sql.columns_of(rows, columns), "uuid, id"
    )
    ids: dict[str, int] = dict(await driver.send(conn, sql, params))  # (uuid, id) rows
    return ids
