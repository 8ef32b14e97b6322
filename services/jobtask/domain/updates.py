"""Checks of create and update input against the resource tables (jobtask.domain.resources).

Input arrives as {attribute: python value}. Aliases are resolved, unknown attributes and
manager-only changes rejected (naming the attribute), values type- and size-checked.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from jobtask.domain.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from jobtask.domain.resources import (
    CONSTRAINT_KEYS,
    MAX_HASH_BYTES,
    MAX_STRING_BYTES,
    MAX_TEXT_BYTES,
    Access,
    Attr,
    Kind,
)
from jobtask.domain.scheduling import MAX_BACKOFF_SECONDS

# Kind's members as globals for check_value, which runs for every attribute of every job and
# task submitted: on Python 3.11 each `Kind.X` is a call of EnumType.__getattr__ (~220 ns,
# against ~20 for a global; see jobtask.domain.statuses), four a string attribute.
_HASH, _STRING, _TEXT = Kind.HASH, Kind.STRING, Kind.TEXT
_FLOAT, _INTEGER, _BOOLEAN = Kind.FLOAT, Kind.INTEGER, Kind.BOOLEAN


def resolve_aliases(changes: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """Maps the seeds' spellings (script_name, resource_limits) to the attribute names."""
    result = dict(changes)
    for alias, name in aliases.items():
        if alias not in result:
            continue
        value = result.pop(alias)
        if name in result and result[name] != value:
            raise InvalidArgument(alias, f"conflicts with {name}: give one of them")
        result[name] = value
    return result


def check_known(attrs: Mapping[str, Attr], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Drops ignored attributes (kind, etag, href); rejects unknown ones."""
    result = {}
    for name, value in changes.items():
        attr = attrs.get(name)
        if attr is None:
            raise InvalidArgument(name, "unknown attribute")
        if attr.access is not Access.IGNORED:
            result[name] = value
    return result


def _blank(value: Any) -> bool:
    """What a null or empty attribute comes back as: None, or a message of zero values
    (`{"rule": "FAILURE_RULE_UNSPECIFIED", "message": "", ...}`), or an empty list."""
    if value is None or value in ("", 0, False, [], {}):
        return True
    if isinstance(value, str):
        return value.endswith("_UNSPECIFIED")
    if isinstance(value, dict):
        return all(_blank(v) for v in value.values())
    return False


def same_value(current: Any, new: Any) -> bool:
    """Equality as a client echoing a record back would mean it (timestamps to the µs; a
    null message attribute and one sent back with zero values are the same)."""
    if (current is None or new is None) and (
        isinstance(current, dict | list) or isinstance(new, dict | list)
    ):
        return _blank(current) and _blank(new)
    if isinstance(current, dt.datetime) and isinstance(new, dt.datetime):
        return abs((current - new).total_seconds()) < 1e-6
    if isinstance(current, float) or isinstance(new, float):
        return current is not None and new is not None and float(current) == float(new)
    return bool(current == new)


def plan_update(
    attrs: Mapping[str, Attr],
    current: object,
    changes: Mapping[str, Any],
    *,
    locked: bool = False,
    may_report: bool = True,
) -> dict[str, Any]:
    """The changes that take effect on `current` (a row, read by attribute: see
    jobtask.store.rows). Unchanged read-only values are ignored (old SDKs send whole
    records back); changed ones are rejected, naming the attribute."""
    effective: dict[str, Any] = {}
    for name, value in changes.items():
        attr = attrs[name]
        unchanged = same_value(getattr(current, name, None), value)
        if attr.access in (Access.MANAGER, Access.CREATE):
            if not unchanged:
                who = "the job manager" if attr.access is Access.MANAGER else "creation"
                raise InvalidArgument(name, f"is set by {who} and cannot be changed")
            continue
        if unchanged:
            continue
        if attr.access is Access.PROCESS and not may_report:
            raise PermissionDenied(
                f"only the process running the task, the job manager and admins may set {name}"
            )
        if attr.definition and locked:
            raise FailedPrecondition(f"the job is locked: {name} can no longer change")
        effective[name] = value
    return effective


def check_value(name: str, attr: Attr, value: Any) -> Any:
    """Type and size checks for one attribute value from a caller."""
    kind = attr.kind
    if kind is _HASH:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InvalidArgument(name, "must be a hash (JSON object)")
        if not value:  # (most tasks' parameters: nothing to measure, ~6 us a task less)
            return value
        if len(json.dumps(value)) > MAX_HASH_BYTES:
            raise InvalidArgument(name, f"is larger than {MAX_HASH_BYTES} bytes")
        check_exact_numbers(name, value)
        return value
    if kind is _STRING or kind is _TEXT:
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidArgument(name, "must be a string")
        limit = MAX_TEXT_BYTES if kind is _TEXT else MAX_STRING_BYTES
        if len(value.encode()) > limit:
            raise InvalidArgument(name, f"is longer than {limit} bytes")
        return value
    if kind is _FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidArgument(name, "must be a number")
        return float(value)
    if kind is _INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(name, "must be an integer")
        return value
    if kind is _BOOLEAN:
        if value is not None and not isinstance(value, bool):
            raise InvalidArgument(name, "must be true, false or null")
        return value
    return value


# Hash attributes travel as protobuf Struct, whose numbers are doubles: past this magnitude
# two different integers arrive as one double, so two jobs would wrongly be the same job.
MAX_EXACT_INTEGER = 2**53 - 1


def check_exact_numbers(name: str, value: Any) -> None:
    """Refuses, naming where it is, a number a double cannot hold exactly as an integer."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_exact_numbers(f"{name}.{key}", item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_exact_numbers(f"{name}[{index}]", item)
    elif (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and abs(value) > MAX_EXACT_INTEGER
    ):
        raise InvalidArgument(
            name,
            f"{value:.17g} is beyond ±{MAX_EXACT_INTEGER} (2^53-1), past which numbers "
            "are not kept exactly: send it as a string",
        )


def check_progress(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise InvalidArgument("progress", f"must be between 0 and 1, got {value}")
    return value


def check_constraints(value: Mapping[str, Any], field: str) -> dict[str, int]:
    """Resource limits and scheduling keys: known keys, non-negative integers, max_nodes >=
    min_nodes, retry_backoff_max_seconds >= retry_backoff_base_seconds."""
    result: dict[str, int] = {}
    for key, raw in value.items():
        if key not in CONSTRAINT_KEYS:
            raise InvalidArgument(f"{field}.{key}", "unknown resource limit")
        if raw is None:
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float) or int(raw) != raw:
            raise InvalidArgument(f"{field}.{key}", f"must be an integer, got {raw!r}")
        if raw < 0:
            raise InvalidArgument(f"{field}.{key}", f"must not be negative, got {raw}")
        result[key] = int(raw)
    for key in ("retry_backoff_base_seconds", "retry_backoff_max_seconds"):
        if result.get(key, 0) > MAX_BACKOFF_SECONDS:
            raise InvalidArgument(
                f"{field}.{key}", f"must be at most {MAX_BACKOFF_SECONDS}, got {result[key]}"
            )
    if result.get("blocklist_threshold", 0) > 2**31 - 1:
        raise InvalidArgument(f"{field}.blocklist_threshold", "is out of range")
    base = result.get("retry_backoff_base_seconds")
    cap = result.get("retry_backoff_max_seconds")
    if base is not None and cap is not None and cap < base:
        raise InvalidArgument(
            f"{field}.retry_backoff_max_seconds",
            f"is below retry_backoff_base_seconds ({cap} < {base})",
        )
    low, high = result.get("min_nodes"), result.get("max_nodes")
    if low is not None and high is not None and high < low:
        raise InvalidArgument(f"{field}.max_nodes", f"is below min_nodes ({high} < {low})")
    return result
