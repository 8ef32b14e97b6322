"""Arvados's list parameters (filters, where, order, select, limit, offset, count), checked.

The result is a ListQuery of plain values that a store compiles to SQL. Every error names
the parameter and, where there is one, the filter's index, attribute and operator.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobtask.domain.errors import InvalidArgument
from jobtask.domain.resources import Attr, Kind
from jobtask.domain.statuses import JobStatus, TaskStatus
from jobtask.domain.updates import MAX_EXACT_INTEGER
from jobtask.domain.uuids import INFIX_OF_KIND

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "like", "ilike", "in", "not in", "is_a", "exists")
_ORDERABLE = {Kind.STRING, Kind.TEXT, Kind.INTEGER, Kind.FLOAT, Kind.DATETIME, Kind.STATUS}
_COMPARABLE = {Kind.STRING, Kind.TEXT, Kind.INTEGER, Kind.FLOAT, Kind.DATETIME}
_TEXTUAL = {Kind.STRING, Kind.TEXT, Kind.STATUS}
_TRUE = {"1", "t", "true", "y", "yes"}
_FALSE = {"0", "f", "false", "n", "no"}


@dataclass(frozen=True)
class Condition:
    """`any of attrs <op> operand`; operands are converted to the attributes' types."""

    attrs: tuple[str, ...]
    op: str
    operand: Any


@dataclass(frozen=True)
class ListQuery:
    conditions: tuple[Condition, ...] = ()
    order: tuple[tuple[str, bool], ...] = ()  # (attribute, descending)
    select: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    count: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def parse_list_query(
    attrs: Mapping[str, Attr],
    *,
    filters: Sequence[Any] | None,
    where: Mapping[str, Any] | None,
    order: Sequence[str],
    select: Sequence[str],
    limit: int | None,
    offset: int | None,
    count: str,
    default_order: Sequence[tuple[str, bool]] = (("modified_at", True), ("uuid", False)),
) -> ListQuery:
    conditions = [*_parse_filters(attrs, filters or []), *_parse_where(attrs, where or {})]
    return ListQuery(
        conditions=tuple(conditions),
        order=_parse_order(attrs, order, default_order),
        select=parse_select(attrs, select),
        limit=_parse_limit(limit),
        offset=_parse_offset(offset),
        count=_parse_count(count),
    )


def _parse_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 0:
        raise InvalidArgument("limit", f"must not be negative, got {limit}")
    # Arvados clamps rather than rejects: the SDK's list_all sends sys.maxsize.
    return min(limit, MAX_LIMIT)


def _parse_offset(offset: int | None) -> int:
    if offset is None:
        return 0
    if offset < 0:
        raise InvalidArgument("offset", f"must not be negative, got {offset}")
    return offset


def _parse_count(count: str) -> bool:
    if count in ("", "exact"):
        return True
    if count == "none":
        return False
    raise InvalidArgument("count", f"must be 'exact' or 'none', got {count!r}")


def parse_select(
    attrs: Mapping[str, Attr], select: Sequence[str], field: str = "select"
) -> tuple[str, ...]:
    """A `select` (a list's, a creation's, a worker's decided tasks'): attribute names, each
    one of `attrs`, else InvalidArgument naming `field`."""
    for name in select:
        if name not in attrs:
            raise InvalidArgument(field, f"unknown attribute {name!r}")
    return tuple(select)


def _parse_order(
    attrs: Mapping[str, Attr],
    order: Sequence[str],
    default_order: Sequence[tuple[str, bool]],
) -> tuple[tuple[str, bool], ...]:
    result: list[tuple[str, bool]] = []
    for entry in order:
        words = entry.strip().split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise InvalidArgument("order", f"{entry!r} is not 'attribute [asc|desc]'")
        name = words[0].split(".")[-1]  # Arvados clients may qualify: "jobs.created_at"
        attr = attrs.get(name)
        if attr is None or not attr.column:
            raise InvalidArgument("order", f"unknown attribute {name!r}")
        if attr.kind not in _ORDERABLE:
            raise InvalidArgument("order", f"cannot order by {name!r} ({attr.kind.value})")
        result.append((name, len(words) == 2 and words[1].lower() == "desc"))
    seen = {name for name, _ in result}
    for name, desc in default_order:
        if name not in seen:
            result.append((name, desc))
            seen.add(name)
    if "uuid" not in seen:
        result.append(("uuid", False))  # a unique key last, so pages are stable
    return tuple(result)


def _parse_where(attrs: Mapping[str, Attr], where: Mapping[str, Any]) -> list[Condition]:
    conditions = []
    for name, value in where.items():
        where_field = f"where[{name}]"
        attr = _filter_attr(attrs, name, where_field)
        if isinstance(value, list):
            conditions.append(Condition((name,), "in", _operand_list(attr, value, where_field)))
        else:
            conditions.append(Condition((name,), "=", _scalar(attr, value, where_field, "=")))
    return conditions


def _parse_filters(attrs: Mapping[str, Attr], filters: Sequence[Any]) -> list[Condition]:
    if not isinstance(filters, Sequence) or isinstance(filters, str):
        raise InvalidArgument("filters", "must be an array of [attribute, operator, operand]")
    # A single filter given without the outer array, as some clients send it.
    if len(filters) == 3 and isinstance(filters[0], str) and isinstance(filters[1], str):
        filters = [filters]
    return [_parse_filter(attrs, i, f) for i, f in enumerate(filters)]


def _parse_filter(attrs: Mapping[str, Attr], index: int, raw: Any) -> Condition:
    where = f"filters[{index}]"
    if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) != 3:
        raise InvalidArgument(where, "must be an array of [attribute, operator, operand]")
    names_raw, op_raw, operand = raw
    if not isinstance(op_raw, str):
        raise InvalidArgument(where, f"operator must be a string, got {_show(op_raw)}")
    op = op_raw.lower().strip()
    if op not in OPERATORS:
        raise InvalidArgument(where, f"unknown operator {op_raw!r}")
    if names_raw == "any":
        names = tuple(n for n, a in attrs.items() if a.column and a.kind in _TEXTUAL)
    elif isinstance(names_raw, str):
        names = (names_raw,)
    elif (
        isinstance(names_raw, Sequence) and names_raw and all(isinstance(n, str) for n in names_raw)
    ):
        names = tuple(names_raw)
    else:
        raise InvalidArgument(where, f"attribute must be a name or a list of names: {names_raw!r}")
    converted = None
    for name in names:
        attr = _filter_attr(attrs, name, where)
        value = _operand(attr, op, operand, f"{where} ({name} {op})")
        if converted is None:
            converted = value
    return Condition(names, op, converted)


def _filter_attr(attrs: Mapping[str, Attr], name: str, where: str) -> Attr:
    attr = attrs.get(name)
    if attr is None or not attr.column:
        raise InvalidArgument(where, f"unknown attribute {name!r}")
    return attr


def _operand(attr: Attr, op: str, operand: Any, where: str) -> Any:
    kind = attr.kind
    if op in ("in", "not in"):
        if not isinstance(operand, list):
            raise InvalidArgument(where, f"operand must be an array, got {_show(operand)}")
        return _operand_list(attr, operand, where)
    if op == "exists":
        if kind is not Kind.HASH:
            raise InvalidArgument(where, "'exists' applies to hash attributes only")
        if not isinstance(operand, str):
            raise InvalidArgument(where, f"operand must be a key (string), got {_show(operand)}")
        return operand
    if op == "is_a":
        if kind is not Kind.STRING:
            raise InvalidArgument(where, "'is_a' applies to uuid attributes only")
        kinds = operand if isinstance(operand, list) else [operand]
        infixes = []
        for k in kinds:
            if k not in INFIX_OF_KIND:
                raise InvalidArgument(where, f"unknown kind {k!r}")
            infixes.append(INFIX_OF_KIND[k])
        return tuple(infixes)
    if kind is Kind.HASH:
        raise InvalidArgument(where, f"operator {op!r} does not apply to hash attributes")
    if op in ("like", "ilike"):
        if kind not in _TEXTUAL:
            raise InvalidArgument(where, f"{op!r} applies to text attributes only")
        if not isinstance(operand, str):
            raise InvalidArgument(where, f"operand must be a string, got {_show(operand)}")
        return operand
    if op in ("<", "<=", ">", ">="):
        if kind not in _COMPARABLE:
            raise InvalidArgument(where, f"{op!r} does not apply to {kind.value} attributes")
        if operand is None:
            raise InvalidArgument(where, "operand must not be null")
    return _scalar(attr, operand, where, op)


def _operand_list(attr: Attr, values: list[Any], where: str) -> tuple[Any, ...]:
    return tuple(_scalar(attr, v, where, "in") for v in values)


def _scalar(attr: Attr, value: Any, where: str, op: str) -> Any:
    """Converts one operand to the attribute's type; None stays None (`is null`)."""
    if value is None:
        return None
    kind = attr.kind
    if kind in (Kind.STRING, Kind.TEXT):
        if not isinstance(value, str):
            raise InvalidArgument(where, f"operand must be a string, got {_show(value)}")
        return value
    if kind is Kind.STATUS:
        if not isinstance(value, str):
            raise InvalidArgument(where, f"operand must be a status name, got {_show(value)}")
        known = {s.value for s in JobStatus} | {s.value for s in TaskStatus}
        if op not in ("like", "ilike") and value not in known:
            raise InvalidArgument(where, f"unknown status {value!r}")
        return value
    if kind is Kind.INTEGER:
        return _integer(value, where)
    if kind is Kind.FLOAT:
        return _number(value, where)
    if kind is Kind.BOOLEAN:
        if op not in ("=", "!=", "in", "not in"):
            raise InvalidArgument(where, f"{op!r} does not apply to boolean attributes")
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise InvalidArgument(where, f"operand must be true or false, got {_show(value)}")
    if kind is Kind.DATETIME:
        return parse_timestamp(value, where)
    raise InvalidArgument(where, f"cannot filter on {kind.value} attributes")


def _integer(value: Any, where: str) -> int:
    """An exact integer within the columns' 64 bits: never rounded through a float. A
    filter's numbers come as doubles (a ListValue; REST's JSON becomes one too), so one
    past 2^53 may already be another integer than the caller wrote: refused, as a hash
    attribute's is (updates.check_exact_numbers); a string of digits is exact."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = _exact(value, where)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                parsed = float(text)
            except ValueError:
                parsed = math.nan
            if math.isfinite(parsed) and parsed.is_integer():
                number = _exact(parsed, where)
    if number is None:
        raise InvalidArgument(where, f"operand must be an integer, got {_show(value)}")
    if not INT64_MIN <= number <= INT64_MAX:
        raise InvalidArgument(where, f"operand {_show(value)} is out of the 64-bit integer range")
    return number


def _number(value: Any, where: str) -> float:
    """A finite number: NaN and the infinities compare with nothing a column holds."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgument(where, f"operand must be a number, got {_show(value)}") from None
    if not math.isfinite(number):
        raise InvalidArgument(where, f"operand must be a finite number, got {_show(value)}")
    return number


def _exact(value: float, where: str) -> int:
    if abs(value) > MAX_EXACT_INTEGER:
        raise InvalidArgument(
            where,
            f"operand {value:.17g} is beyond ±{MAX_EXACT_INTEGER} (2^53-1), past which numbers "
            "are not kept exactly: send it as a string of digits",
        )
    return int(value)


def _show(value: Any) -> str:
    """A value as an error shows it; a whole double as the integer its caller most likely
    wrote (JSON's 1 arrives as 1.0)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_INTEGER:
        value = int(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_timestamp(value: Any, where: str) -> dt.datetime:
    """Parses an ISO 8601 time (Arvados sends 9 fractional digits); naive means UTC."""
    if not isinstance(value, str):
        raise InvalidArgument(where, f"must be an ISO 8601 time, got {_show(value)}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python parses at most 6 fractional digits; Arvados writes 9.
    head, dot, rest = text.partition(".")
    if dot:
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(where, f"must be an ISO 8601 time, got {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)
