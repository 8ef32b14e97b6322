"""The statements of TaskWrites.flush, sent at the driver's level.

A flush writes dozens of rows with a handful of statements (jobtask.store.task_writes), and
SQLAlchemy's executemany then spends more than the database does: per row and column it
builds a parameter dict, looks the bind up and runs its processor. Here each statement's
text is built once per set of columns and its parameters go to the driver as tuples already
in the driver's form, converted by the same bind processors SQLAlchemy would have run
(DateTime's text on SQLite, the JSON serializer for JSON columns): a row written here reads
back exactly as one written through SQLAlchemy.

- SQLite (run inline, jobtask.store.sqlite_inline): one executemany per statement, as
  before, through `exec_driver_sql`.
- PostgreSQL: the whole flush is ONE statement -- one round trip while the caller holds its
  jobs' rows, sent to asyncpg directly (jobtask.store.driver) -- whose data-modifying CTEs
  each take their rows as arrays (`unnest`), a column whose rows all hold one value as
  that one value (_PgStatement.source), a column of text as one text of its values joined,
  and one of integers as one array literal (_PgStatement.array). A CTE cannot update one
  row twice, so TaskWrites merges the writes of one task before they come here, closes
  each lease once, and no two rows shift the same job. The events are inserted in the
  order given (`WITH ORDINALITY ... ORDER BY`): their `seq` follows it. Inserting events
  notifies the other processes (a trigger: migration 0019), so the commit needs no NOTIFY
  round trip of its own.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobtask.domain.statuses import TASK_UNFINISHED, TaskStatus
from jobtask.store import driver
from jobtask.store.database import mark_changed
from jobtask.store.rows import COUNT_COLUMN
from jobtask.store.schema import events, job_tasks, jobs, task_attempts
from sqlalchemy import JSON, Boolean, DateTime, Table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "CLOSE_COLUMNS",
    "EVENT_COLUMNS",
    "UNFINISHED_COLUMNS",
    "Flush",
    "Guard",
    "by_columns",
    "columns_of",
    "driver_rows",
    "event_values",
    "pg_insert",
    "send",
    "send_guarded",
]

Processor = Callable[[Any], Any] | None

# close_params's keys, in their columns' order.
CLOSE_COLUMNS = ("task", "number", "ended", "outcome", "exit_code", "signal", "lease_expires")
_CLOSE_TARGETS = (
    "task_id",
    "attempt",
    "ended_at",
    "outcome",
    "exit_code",
    "signal",
    "lease_expires_at",
)
# The attempt's key: the first two of each.
_CLOSE_KEY = 2
EVENT_COLUMNS = ("created_at", "job_uuid", "task_uuid", "type", "payload")


@dataclass
class Flush:
    """What one flush writes. updates (job_updates): per sorted tuple of job_tasks' (jobs')
    columns, each row's values in that order followed by its id; shifts: (job id, delta
    per count column of `count_columns`); closed: close_params dicts (one per lease);
    opened: per tuple of task_attempts columns, each row's values; events: feed rows'
    values in EVENT_COLUMNS's order, in the order they are to be inserted."""

    updates: dict[tuple[str, ...], list[tuple[Any, ...]]] = field(default_factory=dict)
    job_updates: dict[tuple[str, ...], list[tuple[Any, ...]]] = field(default_factory=dict)
    count_columns: tuple[str, ...] = ()
    shifts: list[tuple[int, ...]] = field(default_factory=list)
    closed: Sequence[Mapping[str, Any]] = ()
    opened: dict[tuple[str, ...], list[tuple[Any, ...]]] = field(default_factory=dict)
    events: Sequence[tuple[Any, ...]] = ()


def _q(name: str) -> str:
    return f'"{name}"'


@functools.lru_cache(maxsize=1024)
def _processors(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> tuple[Processor, ...]:
    """Each column's bind processor for the connection's dialect, as SQLAlchemy would run
    it (None: the value goes as it is)."""
    found: list[Processor] = []
    for name in columns:
        type_ = table.c[name].type
        proc: Processor = type_._cached_bind_processor(dialect)
        if proc is not None and isinstance(type_, DateTime):
            if getattr(type_.dialect_impl(dialect), "_storage_format", None) == _SQLITE_TIME:
                proc = _sqlite_time(proc)
            proc = _last_kept(proc)
        elif proc is not None and isinstance(type_, JSON):
            proc = _empty_kept(_dict_direct(proc, dialect))
        elif (
            proc is not None and isinstance(type_, Boolean) and not dialect.supports_native_boolean
        ):
            proc = _bool_as_int(proc)
        found.append(proc)
    return tuple(found)


# SQLite's DATETIME text as SQLAlchemy writes it (its default storage format).
_SQLITE_TIME = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)
_SQLITE_TIME_TUPLE = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


def _sqlite_time(proc: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """proc for a datetime, its format given a tuple: the same text (the wall-clock time,
    any zone left out) at ~60 % of the cost of SQLAlchemy's, which builds a dict a value.
    Anything else (None, a date) goes to proc."""

    def process(value: Any) -> Any:
        if value.__class__ is not dt.datetime:
            return proc(value)
        v = value
        return _SQLITE_TIME_TUPLE % (
            v.year,
            v.month,
            v.day,
            v.hour,
            v.minute,
            v.second,
            v.microsecond,
        )

    return process


def _dict_direct(proc: Callable[[Any], Any], dialect: Dialect) -> Callable[[Any], Any]:
    """proc, a dict going straight to the engine's JSON serializer where proc's answer for a
    dict is the serializer's (checked here, once): SQLAlchemy's wrapper first tests the value
    against its null markers, a Python call and two tests for each payload, ~7 a job."""
    serializer = getattr(dialect, "_json_serializer", None)
    probe = {"a": [1, None], "b": "c"}
    if serializer is None or proc(probe) != serializer(probe):
        return proc

    def process(value: Any) -> Any:
        if value.__class__ is dict:
            return serializer(value)
        return proc(value)

    return process


def _bool_as_int(proc: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """proc (a Boolean's, where the driver stores integers) answering True and False at once."""

    def process(value: Any) -> Any:
        if value is True:
            return 1
        if value is False:
            return 0
        return proc(value)

    return process


def _empty_kept(proc: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """proc, answering an empty dict's text made once: every seed task's parameters and
    constraints, most jobs' constraints."""
    empty = proc({})

    def process(value: Any) -> Any:
        if value.__class__ is dict and not value:
            return empty
        return proc(value)

    return process


def _last_kept(proc: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """proc, answering again at once for the very object it was last given: a flush's
    datetimes are mostly one `now`, whose text is then made once."""
    last: list[tuple[Any, Any]] = [(object(), None)]

    def process(value: Any) -> Any:
        seen, out = last[0]
        if value is not seen:
            out = proc(value)
            last[0] = (value, out)
        return out

    return process


def _convert(rows: Sequence[Sequence[Any]], procs: Sequence[Processor]) -> list[tuple[Any, ...]]:
    """The rows with each column's processor applied (columns past `procs` go as they are)."""
    active = [(i, p) for i, p in enumerate(procs) if p is not None]
    if not active:
        return [tuple(row) for row in rows]
    out = []
    for row in rows:
        values = list(row)
        for i, proc in active:
            values[i] = proc(values[i])
        out.append(tuple(values))
    return out


def driver_rows(
    dialect: Dialect, table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    """Rows of `table`'s `columns` (each its values in that order) in the driver's form, as
    SQLAlchemy's bind processors would make them (jobtask.store.inserts)."""
    return _convert(rows, _processors(dialect, table, columns))


def by_columns(
    written: Iterable[tuple[int, Mapping[str, Any]]],
) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:
    """(row id, columns written) pairs as Flush.updates and Flush.job_updates take them:
    per sorted tuple of column names, each row's values in that order followed by its id."""
    grouped: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for row_id, columns in written:
        names, pick = _sorted_columns(tuple(columns))
        grouped.setdefault(names, []).append((*pick(columns), row_id))
    return grouped


@functools.lru_cache(maxsize=256)
def _sorted_columns(
    names: tuple[str, ...],
) -> tuple[tuple[str, ...], Callable[[Mapping[str, Any]], tuple[Any, ...]]]:
    """A row's column names (as its dict has them) sorted, and a function giving their
    values in that order: by_columns' per-row work, decided once per column order (sorting
    and a generator a row cost twice as much; a flush's rows mostly share one order)."""
    ordered = tuple(sorted(names))
    return ordered, _picker(ordered)


def event_values(rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Feed rows (dicts of EVENT_COLUMNS) as Flush.events takes them."""
    return columns_of(rows, EVENT_COLUMNS)


def columns_of(rows: Sequence[Mapping[str, Any]], names: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Each row's (a dict's) values of `names`, in that order."""
    pick = _picker(names)
    return [pick(row) for row in rows]


@functools.lru_cache(maxsize=64)
def _picker(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A function of a row (a dict) giving the values of `names` as a tuple, in C."""
    if len(names) == 1:
        (name,) = names
        return lambda row: (row[name],)
    if not names:
        return lambda row: ()
    pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] = operator.itemgetter(*names)
    return pick


# -- SQLite ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _sqlite_update(table: Table, columns: tuple[str, ...]) -> str:
    sets = ", ".join(f"{_q(name)} = ?" for name in columns)
    return f"UPDATE {table.name} SET {sets} WHERE id = ?"


@functools.lru_cache(maxsize=8)
def _sqlite_shift(count_columns: tuple[str, ...]) -> str:
    sets = ", ".join(f"{_q(c)} = {_q(c)} + ?" for c in count_columns)
    return f"UPDATE jobs SET {sets} WHERE id = ?"


_SQLITE_CLOSE = (
    "UPDATE task_attempts SET "
    + ", ".join(f"{_q(c)} = ?" for c in _CLOSE_TARGETS[_CLOSE_KEY:])
    + " WHERE task_id = ? AND attempt = ? AND ended_at IS NULL"
)


@functools.lru_cache(maxsize=16)
def _sqlite_insert(table: Table, columns: tuple[str, ...]) -> str:
    names = ", ".join(_q(c) for c in columns)
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table.name} ({names}) VALUES ({marks})"


async def _send_sqlite(conn: AsyncConnection, flush: Flush) -> None:
    dialect = conn.dialect
    for table, updates in ((job_tasks, flush.updates), (jobs, flush.job_updates)):
        for columns, rows in updates.items():
            procs = _processors(dialect, table, columns)
            await conn.exec_driver_sql(_sqlite_update(table, columns), _convert(rows, procs))
    if flush.shifts:
        # (job id, deltas...) -> (deltas..., job id)
        params = [(*row[1:], row[0]) for row in flush.shifts]
        await conn.exec_driver_sql(_sqlite_shift(flush.count_columns), params)
    if flush.closed:
        procs = _processors(dialect, task_attempts, _CLOSE_TARGETS)
        rows = _convert(columns_of(flush.closed, CLOSE_COLUMNS), procs)
        params = [(*row[_CLOSE_KEY:], *row[:_CLOSE_KEY]) for row in rows]
        await conn.exec_driver_sql(_SQLITE_CLOSE, params)
    for columns, rows in flush.opened.items():
        procs = _processors(dialect, task_attempts, columns)
        await conn.exec_driver_sql(_sqlite_insert(task_attempts, columns), _convert(rows, procs))
    if flush.events:
        procs = _processors(dialect, events, EVENT_COLUMNS)
        rows = _convert(flush.events, procs)
        await conn.exec_driver_sql(_sqlite_insert(events, EVENT_COLUMNS), rows)


# -- PostgreSQL --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _pg_array_type(dialect: Dialect, table: Table, name: str) -> tuple[str, str]:
    """The array type a column's values are sent as, and the cast back (JSON goes as text,
    serialized as SQLAlchemy serializes it, and is cast to the column's json or jsonb)."""
    type_ = table.c[name].type
    impl = type_.dialect_impl(dialect)
    if isinstance(impl, JSON):
        return "text[]", "::jsonb" if isinstance(impl, JSONB) else "::json"
    return f"{type_.compile(dialect=dialect)}[]", ""


def _same(values: list[Any]) -> bool:
    """Whether every value is the first (same type, equal): a column sent as one value.
    Counted and typed in C (list.count, set of map): a Python test per value was a third
    of a flush's building."""
    return values.count(values[0]) == len(values) and len(set(map(type, values))) == 1


def _columns(
    rows: Sequence[Sequence[Any]], procs: Sequence[Processor], width: int
) -> list[list[Any]]:
    """The rows' first `width` columns, each a list of its values in the driver's form
    (its processor mapped over it): the rows turned into columns in C (zip), where a
    list per column built row by row, after a tuple per row, cost two Python steps per
    value."""
    columns = list(zip(*rows, strict=False))[:width] if rows else [() for _ in range(width)]
    return [
        list(map(proc, column)) if proc is not None else list(column)
        for column, proc in zip(columns, procs, strict=True)
    ]


# _PgStatement.array's: the separator of a text column's values sent joined (the ASCII unit
# separator: no uuid, lease id, status or JSON text from orjson holds it raw), and the
# element types sent so.
_SEPARATOR = "\x1f"
_TEXT_ELEMENTS = ("VARCHAR", "TEXT")
_INTEGER_ELEMENTS = frozenset({"BIGINT", "INTEGER", "SMALLINT"})


class _PgStatement:
    """One flush statement being built: CTEs and their parameters. A column whose rows
    all hold the same value (a claim's status, worker, start and lease end; a group's
    `now`) goes as one parameter, not as an array of copies: asyncpg encodes an array
    element by element, at 0.2-0.9 us each, and a claim's or a group's rows share most of
    their columns (about 70 % of a fan-out's elements). Which columns are sent so is part of
    the statement's text, so a flush kind has a few texts (each prepared once a connection),
    not one."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.ctes: list[str] = []
        self.params: list[Any] = []

    def _param(self, value: Any, sql_type: str) -> str:
        self.params.append(value)
        return f"${len(self.params)}::{sql_type}"

    def array(self, values: list[Any], array_type: str) -> str:
        """An array parameter's expression. A column of text goes as ONE text, its values
        joined by a separator none of them holds and split back by string_to_array; a column
        of integers as one array literal. asyncpg encodes an array element by element, and
        tests each element against collections.abc's Iterable and Sized in Python (~0.35 us
        a test): 40 tests a fan-out task over its creation, its claim and its group, against
        3 now (cProfile of the server), about 10 us of its CPU a task. A column with a NULL,
        text that holds the separator, or one empty text goes as the array (the statement's
        text says which: a flush kind has a few texts, each prepared once a connection)."""
        element = array_type[:-2].upper()
        if None in values:
            return self._param(values, array_type)
        if element.startswith(_TEXT_ELEMENTS):
            try:
                joined = _SEPARATOR.join(values)
            except TypeError:
                return self._param(values, array_type)
            # (One value that is empty would split into no value at all.)
            if joined.count(_SEPARATOR) == len(values) - 1 and (joined or len(values) != 1):
                ref = self._param(joined, "text")
                return f"string_to_array({ref}, chr({ord(_SEPARATOR)}))::{array_type}"
        elif element in _INTEGER_ELEMENTS and set(map(type, values)) <= {int}:
            return self._param("{" + ",".join(map(str, values)) + "}", "text") + f"::{array_type}"
        return self._param(values, array_type)

    def source(
        self,
        table: Table,
        names: Sequence[str],
        rows: Sequence[Sequence[Any]],
        alias: str,
        *,
        keep: Sequence[str] = (),
        ordinality: bool = False,
    ) -> tuple[str, dict[str, str]]:
        """The rows as a FROM item -- unnest(...) of the columns sent as arrays, named
        `alias` -- and each column's SQL expression: `alias.column` (cast back), or the
        column's one parameter when all of its rows hold the same value. The columns of
        `keep` (the rows' keys) always go as arrays, and at least one column does."""
        procs = _processors(self.dialect, table, tuple(names))
        columns = _columns(rows, procs, len(names))
        arrays: list[str] = []
        listed: list[str] = []
        exprs: dict[str, str] = {}
        for i, name in enumerate(names):
            array_type, cast = _pg_array_type(self.dialect, table, name)
            values = columns[i]
            last = i == len(names) - 1 and not arrays
            if len(values) > 1 and name not in keep and not last and _same(values):
                exprs[name] = self._param(values[0], array_type[:-2]) + cast
                continue
            arrays.append(self.array(values, array_type))
            listed.append(_q(name))
            exprs[name] = f"{alias}.{_q(name)}{cast}"
        named = ", ".join([*listed, "n"] if ordinality else listed)
        order = " WITH ORDINALITY" if ordinality else ""
        return f"unnest({', '.join(arrays)}){order} AS {alias}({named})", exprs

    def matches(
        self,
        table: Table,
        names: Sequence[str],
        rows: Sequence[Sequence[Any]],
        held: str,
        *,
        keys: str = "",
    ) -> str:
        """Whether the CTE `held` holds exactly `rows` (each its values of `names`, the first
        the key, in the key's order): one pass over `held`, each column compared whole as an
        array aggregated in the key's order, or, when every row holds one value, each row
        against that one value. (A join of `held` with the rows unnested made the planner,
        which thought the CTE's filtered side one row, compare every pair: n^2 for n rows,
        2,500 comparisons a 50-task group.) `keys`: the keys' array, if already a parameter."""
        if not rows:
            return f"NOT EXISTS (SELECT FROM {held})"
        procs = _processors(self.dialect, table, tuple(names))
        columns = _columns(rows, procs, len(names))
        key = _q(names[0])
        tests: list[str] = []
        for i, name in enumerate(names):
            array_type, cast = _pg_array_type(self.dialect, table, name)
            if cast:
                raise ValueError(f"{table.name}.{name}: a JSON column has no equality")
            values = columns[i]
            if not i and keys:
                tests.append(f"array_agg(h.{key} ORDER BY h.{key}) = {keys}")
            elif i and len(values) > 1 and _same(values):
                one = self._param(values[0], array_type[:-2])
                tests.append(f"bool_and(h.{_q(name)} IS NOT DISTINCT FROM {one})")
            else:
                arr = self.array(values, array_type)
                tests.append(f"array_agg(h.{_q(name)} ORDER BY h.{key}) = {arr}")
        return f"coalesce((SELECT {' AND '.join(tests)} FROM {held} AS h), false)"

    def insert_text(
        self,
        table: Table,
        columns: tuple[str, ...],
        rows: Sequence[Sequence[Any]],
        gate: str = "",
    ) -> str:
        """An INSERT of the rows in the order given: ids (an event's seq, a task's id) are
        drawn as the rows are inserted, so they follow that order. `gate`: a condition
        without which nothing is inserted."""
        source, exprs = self.source(table, columns, rows, "r", ordinality=True)
        listed = ", ".join(_q(c) for c in columns)
        values = ", ".join(exprs[c] for c in columns)
        where = f" WHERE {gate}" if gate else ""
        return (
            f"INSERT INTO {table.name} ({listed}) SELECT {values} FROM {source}{where} ORDER BY r.n"
        )

    def insert(
        self,
        name: str,
        table: Table,
        columns: tuple[str, ...],
        rows: Sequence[Sequence[Any]],
        gate: str = "",
    ) -> None:
        """A CTE inserting the rows in the order given (insert_text)."""
        self.ctes.append(f"{name} AS ({self.insert_text(table, columns, rows, gate)})")

    def sql(self, answer: str = "1") -> str:
        """The statement, its one row `answer`."""
        return "WITH " + ",\n".join(self.ctes) + f"\nSELECT {answer}"


@dataclass(frozen=True)
class Guard:
    """What a guarded flush (send_guarded) must find under its locks, or it writes nothing.

    jobs: (id, status, unfinished shift) of every job whose tasks the flush writes, in id
    order: the job's status as the writes assumed it, and by how much they change its count
    of unfinished tasks (TASK_UNFINISHED). Besides its status, each job's counts, with that
    shift, must call for no move of the job: none failed, none canceled, some unfinished --
    enough for ripple.follow_up to answer None for an active job, so no settling is left
    to do after the flush (tests/worker_protocol/test_guarded_groups.py checks the rule
    against it). A job the flush moves itself (a claim's queued -> active) passes the same
    test and is held to its counts whole (`counted`).
    tasks: (id, version, lease id, lease end) of every task the flush writes, in id order,
    as the writes read them (kept_tasks, rule 2: equal, the row is as read).
    job_versions: if given, each job's version as read (in `jobs`' order), which must be
    its version under the lock too: every write of a job's own columns bumps it, its
    counts' shifts do not (a claim chose its tasks by the job's limits and blocklist).
    runnable: every task must also still be runnable as far as other rows go (no earlier
    sequence unfinished, its creator completed), read once the locks are held (migration
    0025's jobtask_unrunnable: a guarded claim's).
    counted: (id, its counts as read, in COUNT_COLUMN's order) of each job whose row the
    flush writes whole (a move: TaskWrites.write_job writes its counts as values, not as
    shifts), whose counts must be those under the lock."""

    jobs: Sequence[tuple[int, str, int]]
    tasks: Sequence[tuple[int, int, Any, Any]]
    job_versions: Sequence[int] | None = None
    runnable: bool = False
    counted: Sequence[tuple[int, Sequence[int]]] = ()


# The count columns of a job's guard: what it may not count, and what it must count (its
# unfinished tasks; Guard.jobs' shifts are of their sum).
_NONE_OF = (COUNT_COLUMN[TaskStatus.FAILED], COUNT_COLUMN[TaskStatus.CANCELED])
UNFINISHED_COLUMNS = tuple(
    COUNT_COLUMN[status] for status in TaskStatus if status in TASK_UNFINISHED
)


def _guard_ctes(st: _PgStatement, guard: Guard) -> None:
    """The guard's CTEs: the jobs' rows locked (in id order), then the tasks' (in id
    order), then `guard`'s one row, `ok`: whether each job and task is as the guard says.
    The locks are those of locks.lock_pairs, in its order."""
    job_ids, statuses, shifts = (list(c) for c in zip(*guard.jobs, strict=True))
    task_columns = ("id", "version", "lease_id", "lease_expires_at")
    task_ids = st.array([task[0] for task in guard.tasks], "bigint[]")
    job_arrays = [
        st._param(job_ids, "bigint[]"),
        st._param(statuses, _pg_array_type(st.dialect, jobs, "status")[0]),
        st._param(shifts, "integer[]"),
    ]
    job_names = "id, status, shift"
    same_job = "h.status = g.status"
    if guard.job_versions is not None:
        job_arrays.append(st._param(list(guard.job_versions), "integer[]"))
        job_names += ", version"
        same_job += " AND h.version = g.version"
    # (The counts as parameters: one text, prepared once, whatever the group's size.)
    n_jobs = st._param(len(job_ids), "bigint")
    none_of = " AND ".join(f"h.{_q(c)} = 0" for c in _NONE_OF)
    some_of = " + ".join(f"h.{_q(c)}" for c in UNFINISHED_COLUMNS)
    held = ", ".join(f"j.{_q(c)}" for c in COUNT_COLUMN.values())
    st.ctes.append(
        f"held_jobs AS (SELECT j.id, j.status, j.version, {held} FROM jobs AS j"
        f" WHERE j.id = ANY({job_arrays[0]}) ORDER BY j.id FOR UPDATE)"
    )
    st.ctes.append(
        "held_tasks AS (SELECT t.id, t.version, t.lease_id, t.lease_expires_at"
        f" FROM job_tasks AS t WHERE t.id = ANY({task_ids})"
        " AND (SELECT count(*) FROM held_jobs) > 0 ORDER BY t.id FOR UPDATE)"
    )
    counted = ""
    if guard.counted:
        names = tuple(COUNT_COLUMN.values())
        ids, values = zip(*guard.counted, strict=True)
        arrays = [st._param(list(ids), "bigint[]")] + [
            st._param([row[i] for row in values], "integer[]") for i in range(len(names))
        ]
        same = " AND ".join(f"h.{_q(c)} = f.{_q(c)}" for c in names)
        counted = (
            " AND (SELECT count(*) FROM held_jobs AS h"
            f" JOIN unnest({', '.join(arrays)}) AS f(id, {', '.join(map(_q, names))})"
            f" ON h.id = f.id WHERE {same}) = {st._param(len(ids), 'bigint')}"
        )
    # The tasks as read (a value all share, as one parameter: a claim's leases, say).
    same_tasks = st.matches(job_tasks, task_columns, guard.tasks, "held_tasks", keys=task_ids)
    # Runnable: asked with the count of held tasks as an argument, so that the function
    # (its own snapshot) runs once the locks are held and sees what committed under them.
    runnable = (
        f" AND jobtask_unrunnable({task_ids}, (SELECT count(*) FROM held_tasks)) = 0"
        if guard.runnable
        else ""
    )
    st.ctes.append(
        "guard AS (SELECT"
        " (SELECT count(*) FROM held_jobs AS h"
        f" JOIN unnest({', '.join(job_arrays)}) AS g({job_names}) ON h.id = g.id"
        f" WHERE {same_job} AND {none_of} AND {some_of} + g.shift > 0)"
        f" = {n_jobs}"
        f" AND {same_tasks}{counted}{runnable} AS ok)"
    )


def _pg_statement(dialect: Dialect, flush: Flush, guard: Guard | None = None) -> _PgStatement:
    st = _PgStatement(dialect)
    # Each write's condition: the guard's answer (an InitPlan, run before the write's first
    # row: the guard's locks are taken before any row is written, jobs first).
    gate = ""
    if guard is not None:
        _guard_ctes(st, guard)
        gate = "(SELECT ok FROM guard)"
    also = f" AND {gate}" if gate else ""
    for table, updates in ((job_tasks, flush.updates), (jobs, flush.job_updates)):
        for n, (columns, rows) in enumerate(updates.items()):
            source, exprs = st.source(table, (*columns, "id"), rows, "v", keep=("id",))
            sets = ", ".join(f"{_q(c)} = {exprs[c]}" for c in columns)
            st.ctes.append(
                f"{table.name}{n} AS (UPDATE {table.name} AS t SET {sets} "
                f"FROM {source} WHERE t.id = v.id{also})"
            )
    if flush.shifts:
        names = ("id", *flush.count_columns)
        source, exprs = st.source(jobs, names, flush.shifts, "d", keep=("id",))
        sets = ", ".join(f"{_q(c)} = j.{_q(c)} + {exprs[c]}" for c in flush.count_columns)
        st.ctes.append(
            f"counts AS (UPDATE jobs AS j SET {sets} FROM {source} WHERE j.id = d.id{also})"
        )
    if flush.closed:
        rows = columns_of(flush.closed, CLOSE_COLUMNS)
        keys = _CLOSE_TARGETS[:_CLOSE_KEY]
        source, exprs = st.source(task_attempts, _CLOSE_TARGETS, rows, "c", keep=keys)
        sets = ", ".join(f"{_q(c)} = {exprs[c]}" for c in _CLOSE_TARGETS[_CLOSE_KEY:])
        # `a.ended_at IS NULL` alone is a filter on task_attempts that PostgreSQL estimates at
        # one row (0.5 % of a table without statistics, a handful of open leases of a big one):
        # it then walked a whole index of the attempts for the open ones and compared each
        # with every attempt of the flush (a fan-out's completion flush: 100 x 100 pairs, and
        # a walk of every attempt ever made; 10,000 tasks deep, most of the flush's time).
        # Tied to the flush's row (`OR c.task_id IS NULL`, never true: the task is the key)
        # it is a join condition, so the flush's rows drive and each finds its attempt through
        # uq_task_attempts_task_id_attempt: one probe per lease, whatever the table's size or
        # statistics. The attempt numbers go as an array even when the rows share one: a
        # constant `a.attempt = $n` is an index condition of its own, and the planner then
        # walked every attempt of that number, joining the flush's rows to each.
        st.ctes.append(
            f"closed AS (UPDATE task_attempts AS a SET {sets} FROM {source} "
            "WHERE a.task_id = c.task_id AND a.attempt = c.attempt"
            f" AND (a.ended_at IS NULL OR c.task_id IS NULL){also})"
        )
    for n, (columns, rows) in enumerate(flush.opened.items()):
        st.insert(f"opened{n}", task_attempts, columns, rows, gate)
    if flush.events:
        st.insert("feed", events, EVENT_COLUMNS, flush.events, gate)
    return st


def pg_insert(
    dialect: Dialect,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
    returning: str,
) -> tuple[str, tuple[Any, ...]]:
    """One PostgreSQL INSERT of the rows (each its values of `columns`), in the order given,
    as the flush inserts (a column per array, a column whose rows all hold one value as that
    value), RETURNING `returning`: its text and parameters. One statement of a few dozen
    parameters whatever the number of rows, where SQLAlchemy's INSERT ... VALUES sends a
    parameter per row and column (13,000 for a thousand tasks) for PostgreSQL to parse,
    plan and check one by one."""
    st = _PgStatement(dialect)
    sql = st.insert_text(table, columns, rows)
    return f"{sql} RETURNING {returning}", tuple(st.params)


async def send_guarded(conn: AsyncConnection, flush: Flush, guard: Guard) -> bool:
    """PostgreSQL: the flush's writes and the guard's locks and checks in ONE statement,
    the writes made only if the guard holds (see Guard); whether they were. On a connection
    outside a transaction (Database.alone) the statement commits as it ends: the jobs' rows
    are held only while the database runs it. (A flush with events whose guard fails still
    fires the events' statement trigger, and commits: the other processes are woken, read
    the feed and find nothing new. Rare: a guard fails when another writer got there
    first.)"""
    if flush.events:
        mark_changed(conn, notified=True)
    st = _pg_statement(conn.dialect, flush, guard)
    found = await driver.send(conn, st.sql("(SELECT ok FROM guard)"), tuple(st.params))
    ok: bool = found[0][0]
    return ok


async def send(conn: AsyncConnection, flush: Flush) -> None:
    """Writes the flush (see the module's text). Events are what watchers and claimers
    wait for: a flush with events marks the transaction changed (already notified: the
    events' trigger notifies)."""
    if flush.events:
        mark_changed(conn, notified=True)
    if conn.dialect.name == "sqlite":
        await _send_sqlite(conn, flush)
        return
    st = _pg_statement(conn.dialect, flush)
    if st.ctes:
        await driver.send(conn, st.sql(), tuple(st.params))
