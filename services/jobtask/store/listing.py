"""Compiles a checked ListQuery (jobtask.domain.query) into SQL on one table."""

from __future__ import annotations

from typing import Any

from jobtask.domain.query import Condition, ListQuery
from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import operators


def column(table: Table, name: str) -> ColumnElement[Any]:
    if name == "qsequence":
        return table.c.id - 1
    return table.c[name]


def condition_sql(
    table: Table, cond: Condition, cluster_id: str, dialect: str
) -> ColumnElement[bool]:
    parts = [
        _one(column(table, name), cond.op, cond.operand, cluster_id, dialect) for name in cond.attrs
    ]
    return parts[0] if len(parts) == 1 else or_(*parts)


_COMPARE = {"<": operators.lt, "<=": operators.le, ">": operators.gt, ">=": operators.ge}


def _one(
    col: ColumnElement[Any], op: str, operand: Any, cluster_id: str, dialect: str
) -> ColumnElement[Any]:
    if op == "=":
        return col.is_(None) if operand is None else col == operand
    if op == "!=":
        if operand is None:
            return col.is_not(None)
        # Arvados: "explicitly allow NULL" for !=.
        return or_(col != operand, col.is_(None))
    if op in _COMPARE:
        return col.operate(_COMPARE[op], operand)
    if op == "like":
        return col.like(operand)
    if op == "ilike":
        return col.ilike(operand)
    if op in ("in", "not in"):
        values = [v for v in operand if v is not None]
        has_null = len(values) != len(operand)
        clause: ColumnElement[bool]
        if op == "in":
            clause = col.in_(values) if values else false()
            return or_(clause, col.is_(None)) if has_null else clause
        clause = col.not_in(values) if values else true()
        # Arvados: `not in` also matches NULL unless the list contains null.
        return and_(clause, col.is_not(None)) if has_null else or_(clause, col.is_(None))
    if op == "is_a":
        return or_(*(col.like(f"{cluster_id}-{infix}-_______________") for infix in operand))
    if op == "exists":
        if dialect == "postgresql":
            return col.op("?")(literal(operand))
        return func.json_type(col, _json_path(operand)).is_not(None)
    raise AssertionError(f"unchecked operator {op!r}")


def _json_path(key: str) -> str:
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'$."{escaped}"'


def where_clause(
    table: Table, query: ListQuery, cluster_id: str, dialect: str
) -> ColumnElement[bool]:
    if not query.conditions:
        return true()
    return and_(*(condition_sql(table, c, cluster_id, dialect) for c in query.conditions))


def ordered(stmt: Select[Any], table: Table, query: ListQuery) -> Select[Any]:
    for name, desc in query.order:
        col = column(table, name)
        stmt = stmt.order_by(col.desc() if desc else col.asc())
    return stmt


async def run_list(
    conn: AsyncConnection,
    table: Table,
    query: ListQuery,
    *,
    cluster_id: str,
    extra: ColumnElement[bool] | None = None,
) -> tuple[list[Any], int | None]:
    """Returns the page of rows and, when the query asks for it, the total count."""
    clause = where_clause(table, query, cluster_id, conn.dialect.name)
    if extra is not None:
        clause = and_(clause, extra)
    stmt = (
        ordered(select(table).where(clause), table, query).limit(query.limit).offset(query.offset)
    )
    rows = list(await conn.execute(stmt))
    total = None
    if query.count:
        total = int(
            (await conn.execute(select(func.count()).select_from(table).where(clause))).scalar()
            or 0
        )
    return rows, total
