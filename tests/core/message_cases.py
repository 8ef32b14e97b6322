"""What tests/core/test_task_messages.py and test_job_messages.py share: rows that move one
attribute at a time through values, and the check that each message, filled after the one
before it, is the one built from its row alone (the same bytes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message
from jobtask.server.message_copies import MessageCopies


def moving_rows(row: Callable[..., Any], values: Mapping[str, list[Any]]) -> list[Any]:
    """The base row (`row()`), then for each attribute each of its values (one attribute
    moved at a time, then back), then rows that differ in many at once."""
    rows = [row()]
    for name, options in values.items():
        rows.extend(row(**{name: value}) for value in options)
        rows.append(row())
    rows.append(row(**{name: options[-1] for name, options in values.items()}))
    rows.append(row(**{name: options[0] for name, options in values.items()}))
    rows.append(row())
    return rows


def serialized(msg: Message) -> bytes:
    return msg.SerializeToString(deterministic=True)


def assert_each_built_alone(
    got: Sequence[Message], rows: Sequence[Any], build: Callable[[Any], Message]
) -> None:
    assert len(got) == len(rows)
    for msg, row in zip(got, rows, strict=True):
        want = build(row)
        assert msg == want, row
        assert serialized(msg) == serialized(want), row


def assert_pairs_built_alone(
    pairs: Iterable[tuple[Any, Any]],
    messages: Callable[[], MessageCopies],
    answer: Callable[[], Any],
    build: Callable[[Any], Message],
) -> None:
    """Each pair of rows filled into a new answer's list (`answer()`), the second after the
    first: both messages as `build` makes them alone."""
    for a, b in pairs:
        copies = messages()
        into = answer()
        for row in (a, b):
            fields = copies.fields(row)
            copies.fill(into.add() if fields is None else into.add(**fields), row)
        assert serialized(into[0]) == serialized(build(a))
        assert serialized(into[1]) == serialized(build(b)), (a, b)
