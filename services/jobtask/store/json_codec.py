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

# Keys other than exact str (ints, a StrEnum member) are written as their text. orjson's path
# for them costs ~1,900 instructions more a feed payload (~12 % of its serializing; four a
# one-task job drained), so it is taken only for a value the plain path refuses: its
# text for str keys is the same.
_NON_STR_KEYS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return orjson.dumps(value, option=_NON_STR_KEYS).decode()


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # Written by the standard library before: SQLite may hold its NaN and Infinity.
        return json.loads(text)
