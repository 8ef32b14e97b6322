"""Protobuf messages rendered as Arvados JSON.

Arvados clients expect every attribute present (null when unset), snake_case names, numbers as
JSON numbers (proto3 JSON writes int64 as strings), lower-case hyphenated status names and
timestamps with exactly nine fractional digits. json_format does none of these, so the walk
over the descriptor is ours; only the well-known types without an Arvados form use it.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from jobtask.gateway.descriptors import JSON_VALUED, enum_of, is_map, message_of
from jobtask.gateway.naming import enum_wire_name

__all__ = ["dumps", "format_timestamp", "render", "render_value", "select_attributes"]

_TIMESTAMP = "google.protobuf.Timestamp"
_ITEMS_AVAILABLE = "items_available"
_CONSTRAINTS = "jobtask.v1.RuntimeConstraints"


def format_timestamp(ts: Timestamp) -> str:
    """Arvados's `%Y-%m-%dT%H:%M:%S.%NZ`: always nine fractional digits, always UTC."""
    whole = ts.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{ts.nanos:09d}Z"


def render(message: Message) -> dict[str, Any]:
    """Every field of `message`, by its proto (snake_case) name."""
    full_name = message.DESCRIPTOR.full_name
    if full_name in JSON_VALUED or full_name == _TIMESTAMP:
        raise TypeError(f"{full_name} has no object form; use render_value")
    descriptor: Descriptor = message.DESCRIPTOR  # type: ignore[assignment]  # upb's twin type
    rendered = {field.name: _render_field(message, field) for field in descriptor.fields}
    if _ITEMS_AVAILABLE in descriptor.fields_by_name and not message.HasField(_ITEMS_AVAILABLE):
        # A list asked with count=none: Arvados omits the key rather than sending null.
        del rendered[_ITEMS_AVAILABLE]
    if full_name == _CONSTRAINTS:
        # Arvados's runtime_constraints is the hash as given: a limit not set is no key.
        rendered = {name: value for name, value in rendered.items() if value is not None}
    return rendered


def _render_field(message: Message, field: FieldDescriptor) -> Any:
    value = getattr(message, field.name)
    if is_map(field):
        value_field = message_of(field).fields_by_name["value"]
        return {str(k): _render_scalar_or_message(value_field, v) for k, v in value.items()}
    if field.is_repeated:
        return [_render_scalar_or_message(field, v) for v in value]
    if field.has_presence and not message.HasField(field.name):
        # Unset optional scalars and unset messages are null, as Arvados's nil attributes are.
        return None
    return _render_scalar_or_message(field, value)


def _render_scalar_or_message(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return render_value(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum_value = enum_of(field).values_by_number.get(value)
        return enum_wire_name(enum_value) if enum_value is not None else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value


def render_value(message: Message) -> Any:
    """A message in whatever JSON form suits it: objects, native JSON or a string."""
    full_name = message.DESCRIPTOR.full_name
    if full_name == _TIMESTAMP:
        assert isinstance(message, Timestamp)
        return format_timestamp(message)
    if full_name in JSON_VALUED:
        return _native(json_format.MessageToDict(message))
    if full_name.startswith("google.protobuf."):
        # Duration ("1.5s"), FieldMask ("a,b"), wrappers: proto3 JSON is the only form there is.
        return json_format.MessageToDict(message)
    return render(message)


def _native(value: Any) -> Any:
    """Struct numbers are doubles; integral ones go back out as integers, as they came in."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _native(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_native(v) for v in value]
    return value


def select_attributes(item: dict[str, Any], select: Iterable[str]) -> dict[str, Any]:
    """Arvados's `select`: only the named attributes, plus `kind` (`@select |= ["kind"]`)."""
    wanted = [*select, "kind"]
    return {name: item[name] for name in wanted if name in item}


def dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
