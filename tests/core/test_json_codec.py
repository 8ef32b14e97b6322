"""The store's JSON columns go through orjson (jobtask.store.json_codec) on both engines, and
text the standard library wrote before still reads."""

from __future__ import annotations

import datetime as dt
import enum
import math
import sqlite3
from pathlib import Path

import orjson
import pytest
from jobtask.store import json_codec
from jobtask.store.database import Database
from jobtask.store.migrate import upgrade
from jobtask.store.schema import jobs
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection


def test_values_round_trip_and_old_text_reads() -> None:
    value = {"a": 1, "b": [1.5, "x", None, True], "c": {"d": "é"}}
    assert json_codec.loads(json_codec.dumps(value)) == value
    assert json_codec.dumps(value) == '{"a":1,"b":[1.5,"x",null,true],"c":{"d":"é"}}'
    # The standard library's text, NaN included (SQLite kept it).
    old = json_codec.loads('{"a": 1, "n": NaN}')
    assert old["a"] == 1 and math.isnan(old["n"])
    assert json_codec.dumps({"n": math.nan}) == '{"n":null}'


class _Color(enum.StrEnum):
    RED = "red"


def test_keys_that_are_not_plain_str_are_written_as_their_text() -> None:
    # orjson's plain path refuses these; the codec writes them as it always did.
    value = {1: "a", "b": {_Color.RED: [2]}, "c": {dt.date(2026, 1, 2): None}}
    assert json_codec.dumps(value) == '{"1":"a","b":{"red":[2]},"c":{"2026-01-02":null}}'
    # A value no option serializes still raises the encoder's error.
    with pytest.raises(orjson.JSONEncodeError):
        json_codec.dumps({"x": object()})


async def test_the_engines_write_through_the_codec(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    db = Database(f"sqlite:///{path}")
    await upgrade(db)
    now = dt.datetime.now(dt.UTC)
    params = {"input": "a b", "n": [1, 2]}

    async def write(conn: AsyncConnection) -> object:
        await conn.execute(
            insert(jobs).values(
                uuid="zzzzz-8i9sb-000000000000001",
                owner_uuid="zzzzz-tpzed-000000000000001",
                created_at=now,
                modified_at=now,
                identity="i",
                script="s",
                script_parameters=params,
                script_version="v",
                runtime_constraints={},
                status="queued",
                state="Queued",
            )
        )
        return (await conn.execute(select(jobs.c.script_parameters))).scalar_one()

    try:
        assert await db.transact(write) == params
    finally:
        await db.dispose()
    with sqlite3.connect(path) as raw:
        (text,) = raw.execute("SELECT script_parameters FROM jobs").fetchone()
    assert text == '{"input":"a b","n":[1,2]}'
