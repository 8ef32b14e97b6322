"""How the store writes and reads its JSON columns (parameters, constraints, event payloads):
orjson, on both engines. Every write carries JSON -- an event's payload is a whole task or
job row -- and the standard library's encoder was a tenth of a server's samples on one-task
jobs. Output is compact (no spaces); a float that is not finite is written as null (JSON has
no NaN: PostgreSQL refused the standard library's `NaN`, SQLite kept it, and such text still
reads)."""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=_OPTIONS).decode()


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # Written by the standard library before: SQLite may hold its NaN and Infinity.
        return json.loads(text)
