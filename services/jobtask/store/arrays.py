"""List parameters whose statement text does not depend on the list's length.

`column IN (:name)` with an expanding parameter renders one placeholder per item, so each
length is a statement of its own: on PostgreSQL a new prepared statement (asyncpg's cache),
parsed and planned again, and never old enough for PostgreSQL to settle on a cached generic
plan (it tries one after five custom plans of one statement). `one_of(column, "name")`
renders `column = ANY($n::TYPE[])` on PostgreSQL, one array parameter, so a hot-path
statement is one prepared statement whatever the length; elsewhere (SQLite) it is the
expanding IN. Either way the parameter is a list.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BindParameter, Boolean, all_, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = ["none_of", "one_of"]


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
