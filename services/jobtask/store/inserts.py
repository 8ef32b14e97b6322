"""Rows inserted many at a time and not read back: the INSERT returns each row's id, and the
row as written is what was given, that id and the schema's server defaults. (RETURNING every
column cost SQLAlchemy its whole row processing, JSON documents decoded, for values the
caller already holds.)"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

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
    rows as written (`build` makes each of its columns by name), in the given order."""
    if not rows:
        return []
    ids: dict[str, int] = dict(tuple(r) for r in await conn.execute(_insert(table), rows))
    defaults = server_defaults(table)
    return [build({**defaults, **row, "id": ids[row["uuid"]]}) for row in rows]
