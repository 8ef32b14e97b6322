"""None and blobs bound through the adapters jobtask.store.sqlite_inline registers for them
(a cheaper path through the sqlite3 module than none): None still NULL and a blob still the
same blob, in every statement form the store uses, and registered once an engine exists."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from jobtask.store import sqlite_inline
from sqlalchemy import Column, LargeBinary, MetaData, Table, insert, select, text


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


def test_blob_is_bound_as_the_same_blob(tmp_path: Path) -> None:
    created = sqlite_inline.engine(str(tmp_path / "blob.sqlite3"), writer=True, echo=False)
    table = Table("d", MetaData(), Column("digest", LargeBinary(32)))
    try:
        # The registry's entry for memoryview (SQLAlchemy's form of a bytes parameter).
        assert (memoryview, sqlite3.PrepareProtocol) in sqlite3.adapters
        digest = bytes(range(32))
        with created.connect() as conn:
            table.create(conn)
            conn.execute(insert(table), [{"digest": digest}, {"digest": b""}])
            conn.exec_driver_sql("INSERT INTO d VALUES (?)", (memoryview(b"\x00a\x00"),))
            rows = conn.exec_driver_sql("SELECT typeof(digest), digest FROM d").all()
            assert [tuple(row) for row in rows] == [
                ("blob", digest),
                ("blob", b""),
                ("blob", b"\x00a\x00"),
            ]
            # And a bound blob compares as the blob it is (a token found by its digest).
            found = conn.execute(select(table.c.digest).where(table.c.digest == digest))
            assert found.scalar_one() == digest
    finally:
        created.dispose()
