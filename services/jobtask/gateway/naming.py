"""Names on the wire: enum values, method names and schema names, derived from descriptors."""

from __future__ import annotations

import functools
import hashlib
import re

from google.protobuf.descriptor import EnumDescriptor, EnumValueDescriptor

__all__ = [
    "enum_prefix",
    "enum_value_by_wire_name",
    "enum_wire_name",
    "snake_case",
    "uuid_infix",
    "words",
]


@functools.cache
def enum_prefix(enum: EnumDescriptor) -> str:
    """The words every value name shares (`JOB_STATUS_`), leaving each value at least one word."""
    split = [v.name.split("_") for v in enum.values]
    if not split:
        return ""
    shared: list[str] = []
    for group in zip(*split, strict=False):
        if len(set(group)) != 1:
            break
        shared.append(group[0])
    shortest = min(len(s) for s in split)
    shared = shared[: max(shortest - 1, 0)]
    return "".join(w + "_" for w in shared)


def enum_wire_name(value: EnumValueDescriptor) -> str:
    """JOB_STATUS_CANCEL_REQUESTED -> "cancel-requested" (Flamenco's spelling)."""
    return value.name[len(enum_prefix(value.type)) :].lower().replace("_", "-")


def enum_value_by_wire_name(enum: EnumDescriptor, name: str) -> EnumValueDescriptor | None:
    """Accepts the wire name, the proto name, or the suffix in any case and with `-` or `_`."""
    if name in enum.values_by_name:
        return enum.values_by_name[name]
    wanted = enum_prefix(enum) + name.strip().upper().replace("-", "_")
    return enum.values_by_name.get(wanted)


def words(camel: str) -> list[str]:
    """`QueueSize` -> ["Queue", "Size"]; `ReportTaskExit` -> ["Report", "Task", "Exit"]."""
    return re.findall(r"[A-Z]+(?=[A-Z][a-z]|\d|$)|[A-Z]?[a-z]+|\d+", camel)


def snake_case(camel: str) -> str:
    return "_".join(w.lower() for w in words(camel))


def uuid_infix(class_name: str) -> str:
    """Arvados's type infix: the last 5 base-36 digits of the MD5 of the class name."""
    n = int(hashlib.md5(class_name.encode(), usedforsecurity=False).hexdigest(), 16)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out[-5:]
