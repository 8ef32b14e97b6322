"""List parameters whose statement text does not depend on the list's length.

`column IN (:name)` with an expanding parameter renders one placeholder per item, so each
length is a statement of its own: on PostgreSQL a new prepared statement (asyncpg's cache),
parsed and planned again, and never old enough for PostgreSQL to settle on a cached generic
plan (it tries one after five custom plans of one statement). `one_of(column, "name")`
renders `column = ANY($n::TYPE[])` on PostgreSQL, one array parameter, so a hot-path
statement is one prepared statement whatever the length; elsewhere (SQLite) it is the
expanding IN. Either way the parameter is a list.

`among(column, subquery)` is `column IN (subquery)`, rendered `column = ANY(ARRAY(subquery))`
on PostgreSQL: the subquery runs once, first, and the index of `column` is probed for each
value it found, in the index's order -- rows locked in that order need no sort.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BindParameter, Boolean, Select, all_, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = ["among", "none_of", "one_of"]


class _Listed(ColumnElement[bool]):
    """`column` is (or, `negated`, is not) one of the list parameter `name`."""

    inherit_cache = True
    type = Boolean()
    # A predicate, not a boolean value: no `= 1` after it where booleans are integers.
    _is_implicitly_boolean = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("name", InternalTraversal.dp_string),
        ("negated", InternalTraversal.dp_boolean),
    ]

    def __init__(self, column: ColumnElement[Any], name: str, *, negated: bool) -> None:
        self.column = column
        self.name = name
        self.negated = negated


def one_of(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """`column IN (:name...)`, one array parameter on PostgreSQL."""
    return _Listed(column, name, negated=False)


def none_of(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """`column NOT IN (:name...)`, one array parameter on PostgreSQL; an empty list
    excludes nothing."""
    return _Listed(column, name, negated=True)


@compiles(_Listed, "postgresql")
def _as_array(element: _Listed, compiler: SQLCompiler, **kw: Any) -> str:
    array = bindparam(element.name, type_=ARRAY(element.column.type))
    if element.negated:
        return compiler.process(element.column != all_(array), **kw)
    return compiler.process(element.column == any_(array), **kw)


@compiles(_Listed)
def _as_list(element: _Listed, compiler: SQLCompiler, **kw: Any) -> str:
    items: BindParameter[Any] = bindparam(element.name, expanding=True)
    if element.negated:
        return compiler.process(element.column.not_in(items), **kw)
    return compiler.process(element.column.in_(items), **kw)


class _Among(ColumnElement[bool]):
    """`column` is one of the values `subquery` selects."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("subquery", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], subquery: Select[Any]) -> None:
        self.column = column
        self.subquery = subquery


def among(column: ColumnElement[Any], subquery: Select[Any]) -> ColumnElement[bool]:
    """`column IN (subquery)`; on PostgreSQL `column = ANY(ARRAY(subquery))`, so an index of
    `column` gives the rows in its order (the store's sessions plan no sorts:
    jobtask.store.database.SESSION_SETTINGS). The subquery must not correlate: select from
    an alias of the outer statement's table."""
    return _Among(column, subquery)


@compiles(_Among, "postgresql")
def _as_any_array(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"{column} = ANY (ARRAY{compiler.process(element.subquery.scalar_subquery(), **kw)})"


@compiles(_Among)
def _as_in(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column.in_(element.subquery), **kw)
