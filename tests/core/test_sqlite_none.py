"""None bound through the adapter jobtask.store.sqlite_inline registers for it (a cheaper
path through the sqlite3 module than none): still NULL, in every statement form the store
uses, and registered once an engine exists."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from jobtask.store import sqlite_inline
from sqlalchemy import text


def test_none_is_bound_as_null(tmp_path: Path) -> None:
    created = sqlite_inline.engine(str(tmp_path / "none.sqlite3"), writer=True, echo=False)
    try:
        # The registry's entry for None, as the sqlite3 module looks it up when binding.
        assert (type(None), sqlite3.PrepareProtocol) in sqlite3.adapters
        with created.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE t (a, b TEXT, c BLOB)")
            conn.exec_driver_sql("INSERT INTO t VALUES (?, ?, ?)", (None, None, None))
            conn.exec_driver_sql("INSERT INTO t VALUES (?, ?, ?)", [(None, "x", None)] * 3)
            nones = {"a": None, "b": None, "c": None}
            conn.execute(text("INSERT INTO t VALUES (:a, :b, :c)"), nones)
            conn.exec_driver_sql("UPDATE t SET b = ? WHERE b = ?", (None, "x"))
            rows = conn.exec_driver_sql("SELECT typeof(a), typeof(b), typeof(c) FROM t").all()
            assert [tuple(row) for row in rows] == [("null", "null", "null")] * 5
            # And None in a comparison is NULL's: it matches nothing.
            assert conn.exec_driver_sql("SELECT count(*) FROM t WHERE a = ?", (None,)).scalar() == 0
            assert conn.exec_driver_sql("SELECT ? IS NULL", (None,)).scalar() == 1
    finally:
        created.dispose()
