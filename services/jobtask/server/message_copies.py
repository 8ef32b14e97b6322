"""Many rows' messages filled in a row (an answer's list), each copied from the one filled
before it and then changed where its row differs: the machinery task_messages and
job_messages share.

The rows of one answer are mostly siblings -- a claim's or a creation's tasks of one job, a
submission's new jobs, written at one `now` -- whose messages differ in a few fields (uuid,
href, etag). Building each from its row (a constructor call and a fill) costs several times
what a copy of the last message (upb, in C) and the differing fields set cost. Each kind's
module lists, for every row attribute its message is made of, the setter that puts the
attribute into the message (tests: the same bytes as the message built from the row)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from jobtask.server.convert import constraint_ints, failure_pb, stamp
from jobtask.store.rows import time_names

Setter = Callable[[Any, Any], None]
Differ = Callable[[Any, Any], list[Setter]]


def column_setter(name: str, is_time: bool) -> Setter:
    """A copied column's setter: None clears the field (null), a time is stamped in it."""

    def put(msg: Any, row: Any) -> None:
        value = getattr(row, name)
        if value is None:
            msg.ClearField(name)
        elif is_time:
            stamp(getattr(msg, name), value)
        else:
            setattr(msg, name, value)

    return put


def with_columns(
    special: Mapping[str, Setter], copied: Iterable[str], row_class: type, derived: frozenset[str]
) -> dict[str, Setter]:
    """A kind's setters: its `special` ones, and a column_setter for every other attribute
    it copies (`copied`, convert's copy list) but those `derived` from other attributes
    (set with them: the etag, the qsequence)."""
    times = frozenset(time_names(row_class))
    out = dict(special)
    for name in copied:
        if name not in derived and name not in out:
            out[name] = column_setter(name, name in times)
    return out


def uuid_setter(href: str) -> Setter:
    """The uuid's setter: the uuid, the href (`href` and the uuid) and the etag (of uuid and
    version)."""

    def put(msg: Any, row: Any) -> None:
        msg.uuid = row.uuid
        msg.href = href + row.uuid
        msg.etag = row.etag

    return put


def set_etag(msg: Any, row: Any) -> None:
    """The version's setter: the etag (of uuid and version)."""
    msg.etag = row.etag


def status_setter(to_pb: Mapping[Any, Any]) -> Setter:
    def put(msg: Any, row: Any) -> None:
        msg.status = to_pb[row.status]

    return put


def struct_setter(name: str) -> Setter:
    """A JSON object column's setter, into its Struct field of the same name: present in
    every message, empty or not (convert._struct)."""

    def put(msg: Any, row: Any) -> None:
        field = getattr(msg, name)
        field.Clear()
        value = getattr(row, name)
        if value:
            field.update(value)
        else:
            field.SetInParent()

    return put


def constraints_setter(*names: str) -> Setter:
    """runtime_constraints' setter, into each of the RuntimeConstraints fields `names`:
    present in every message, as the fields functions give them to the constructor."""

    def put(msg: Any, row: Any) -> None:
        values = constraint_ints(row.runtime_constraints).items()
        for name in names:
            field = getattr(msg, name)
            field.Clear()
            field.SetInParent()
            for key, value in values:
                setattr(field, key, value)

    return put


def set_failure(msg: Any, row: Any) -> None:
    msg.ClearField("failure_reason")
    if row.failure_reason:
        msg.failure_reason.CopyFrom(failure_pb(row.failure_reason))


def make_differ(
    setters: Mapping[str, Setter], rebuilt: frozenset[str], signed: frozenset[str]
) -> Differ:
    """differ(a, b): the setters of the attributes b holds other than a -- unrolled, a test
    per attribute (a loop over names cost several times as much). Equal but of another
    type (1 and True, 0 and 0.0) counts as other; so does a `signed` float's sign (-0.0);
    a `rebuilt` attribute (a JSON column) that is not empty always does: equal values may
    still make other messages (1 and True are equal, a number_value and a bool_value are
    not). A setter may be listed for several attributes (it is then called more than once:
    setters only set)."""
    lines = ["def differ(a, b):", "    out = []"]
    for name in setters:
        lines.append(f"    x = a.{name}; y = b.{name}")
        if name in rebuilt:
            test = "x is not y and (x or y)"
        else:
            test = "x is not y and (x != y or x.__class__ is not y.__class__"
            if name in signed:
                test += " or _copysign(1.0, x) != _copysign(1.0, y)"
            test += ")"
        lines.append(f"    if {test}:")
        lines.append(f"        out.append(_S[{name!r}])")
    lines.append("    return out")
    scope: dict[str, Any] = {"_S": dict(setters), "_copysign": math.copysign}
    exec("\n".join(lines) + "\n", scope)  # built from the row class's own field names
    differ: Differ = scope["differ"]
    return differ


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of row's message: its constructor's arguments from a row (convert.task_fields),
    the rest of it filled in the built message (convert.fill_task), and the differ of its
    setters (make_differ)."""

    fields: Callable[[Any], dict[str, Any]]
    fill: Callable[[Any, Any], None]
    differ: Differ


class MessageCopies:
    """Fills rows' messages one after another (see the module's text): the first built from
    its row, each next one a copy of the last, changed where its row differs. For each row,
    in order: `fields(row)`, given to the constructor of the message (or of the message
    that holds it), then `fill(msg, row)`."""

    __slots__ = ("_kind", "_last")

    def __init__(self, kind: Kind) -> None:
        self._kind = kind
        self._last: tuple[Any, Message] | None = None

    def fields(self, row: Any) -> dict[str, Any] | None:
        """The first row's message as a constructor's arguments (a message built apart and
        copied in costs more); None for the others, which `fill` copies."""
        return self._kind.fields(row) if self._last is None else None

    def fill(self, msg: Any, row: Any) -> None:
        """Makes `msg` the row's message: built from `fields(row)`, or still empty."""
        last = self._last
        if last is None:
            self._kind.fill(msg, row)
        else:
            msg.CopyFrom(last[1])
            for put in self._kind.differ(last[0], row):
                put(msg, row)
        self._last = (row, msg)


def add_copies(into: Any, rows: Iterable[Any], messages: MessageCopies) -> None:
    """The rows' messages added to a repeated field (a response's list), each built where it
    is sent (a message built apart and added is copied whole), one after another."""
    add = into.add
    for row in rows:
        fields = messages.fields(row)
        messages.fill(add() if fields is None else add(**fields), row)
