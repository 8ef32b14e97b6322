"""How a PostgreSQL flush or bulk insert sends its rows (jobtask.store.flush_sql): a column
per array, each value converted by its bind processor (JSON serialized), and a column whose
rows all hold one value -- equal and of one type -- sent as that one value. (An array of
text goes as one text, its values joined, and one of integers as one array literal:
tests/core/test_flush_arrays.py.)"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from jobtask.store import json_codec
from jobtask.store.flush_sql import driver_rows, pg_insert
from jobtask.store.schema import job_tasks
from sqlalchemy.dialects.postgresql.asyncpg import dialect
from sqlalchemy.dialects.sqlite.pysqlite import dialect as sqlite_dialect

PG = dialect(json_serializer=json_codec.dumps)
COLUMNS = ("uuid", "status", "runtime_constraints", "attempt")
SEP = "\x1f"  # flush_sql._SEPARATOR


def _insert(rows: list[tuple[Any, ...]]) -> tuple[str, tuple[Any, ...]]:
    return pg_insert(PG, job_tasks, COLUMNS, rows, "uuid, id")


def test_columns_go_as_arrays_of_driver_values_or_as_their_one_value() -> None:
    rows = [
        ("u1", "queued", {"ram": 1}, 0),
        ("u2", "queued", {"ram": 2}, 0),
        ("u3", "queued", {"ram": 1}, 0),
    ]
    sql, params = _insert(rows)
    uuids, status, constraints, attempt = params
    assert uuids.split(SEP) == ["u1", "u2", "u3"]
    assert status == "queued" and attempt == 0  # one value each
    assert [json.loads(c) for c in constraints.split(SEP)] == [{"ram": 1}, {"ram": 2}, {"ram": 1}]
    assert "$2::VARCHAR" in sql and "$4::INTEGER" in sql
    assert "string_to_array($1::text, chr(31))::VARCHAR(27)[]" in sql
    assert "string_to_array($3::text, chr(31))::text[]" in sql


def test_equal_values_of_different_types_are_not_one_value() -> None:
    # 1 == True, but a parameter has one type: the column goes as an array of each value.
    sql, params = _insert([("u1", "queued", {}, 1), ("u2", "queued", {}, True)])
    assert params[-1] == [1, True]
    assert "$4::INTEGER[]" in sql
    # Equal JSON documents serialize to one text: one value.
    assert params[2] == "{}"


def test_a_single_row_goes_as_arrays() -> None:
    sql, params = _insert([("u1", "queued", {"a": 1}, 2)])
    assert params == ("u1", "queued", '{"a":1}', "{2}")
    assert sql.count("string_to_array(") == 3 and "$4::text::INTEGER[]" in sql


def test_json_values_are_sent_as_the_columns_own_processor_sends_them() -> None:
    # An empty document's text is made once (flush_sql._empty_kept): the same text.
    columns = ("parameters", "runtime_constraints")
    rows = [({}, {"ram": 1}), ({"a": [1, {}]}, {}), ({}, {})]
    for engine in (PG, sqlite_dialect(json_serializer=json_codec.dumps)):
        procs = [job_tasks.c[name].type._cached_bind_processor(engine) for name in columns]
        assert all(procs)  # JSON columns always have one
        expected = [tuple(p(v) for p, v in zip(procs, row, strict=True)) for row in rows]  # type: ignore[misc]
        assert driver_rows(engine, job_tasks, columns, rows) == expected


def test_times_booleans_and_documents_go_as_sqlalchemy_would_send_them() -> None:
    # flush_sql answers a datetime (SQLite's text), a bool (SQLite's integer) and a dict (the
    # serializer's text) without SQLAlchemy's processors: byte for byte their values.
    columns = ("created_at", "finished_at", "success", "parameters", "failure_reason")
    utc = dt.UTC
    plus_two = dt.timezone(dt.timedelta(hours=2))
    rows = [
        (dt.datetime(2026, 12, 5, 21, 50, 1, 123456, tzinfo=utc), None, True, {"a": 1}, None),
        (dt.datetime(2026, 1, 2, 3, 4, 5), dt.datetime(1, 1, 1), False, {}, {"rule": "x"}),
        (dt.datetime(999, 12, 31, 23, 59, 59, tzinfo=plus_two), dt.date(2026, 1, 1), None, [], {}),
        (dt.datetime(2026, 6, 1, tzinfo=utc), dt.datetime.max, 1, {"b": [None, 2.5]}, "text"),
    ]
    for engine in (PG, sqlite_dialect(json_serializer=json_codec.dumps)):
        procs = [job_tasks.c[name].type._cached_bind_processor(engine) for name in columns]
        expected = [
            tuple(v if p is None else p(v) for p, v in zip(procs, row, strict=True)) for row in rows
        ]
        got = driver_rows(engine, job_tasks, columns, rows)
        assert got == expected
        assert [tuple(map(type, row)) for row in got] == [tuple(map(type, r)) for r in expected]
