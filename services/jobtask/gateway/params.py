"""HTTP request → request message, driven by the field descriptors of the RPC's input type.

Arvados merges parameters from the path, the query string, a form body and a JSON body, and
its clients disagree on how they encode structured values: JSON strings, native JSON,
comma-separated strings, repeated parameters. Everything is coerced here to the proto3 JSON
form json_format parses, so every error names the parameter or attribute at fault.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from jobtask.gateway.descriptors import JSON_VALUED, enum_of, field_named, is_map, message_of
from jobtask.gateway.errors import ApiError
from jobtask.gateway.naming import enum_value_by_wire_name
from jobtask.gateway.routing import Binding

__all__ = [
    "IGNORED_PARAMS",
    "RESOURCE_METADATA",
    "HttpInput",
    "QueryValues",
    "build_request",
    "coerce",
    "parse_json",
]

# Accepted from Arvados clients and deliberately without effect here.
IGNORED_PARAMS = frozenset(
    {
        "alt",
        "_method",
        "api_token",
        "oauth_token",
        "reader_tokens",
        "ensure_unique_name",
        # jobs.create's narrowing of find_or_create to git commits: a job is reused here only
        # when its script_version is the same text (docs/arvados-attributes.md).
        "minimum_script_version",
        "exclude_script_versions",
        "cluster_id",
        "bypass_federation",
        "fields",
        "key",
        "prettyPrint",
        "quotaUser",
        "userIp",
    }
)
# Arvados ignores these in a create/update body: clients send whole records back.
RESOURCE_METADATA = frozenset({"kind", "etag", "href"})
# Arvados's request parameters: a JSON body's top-level key of one of these names is the
# parameter, never a bare attribute of the resource (Rails wraps only the model's own
# attribute names), whether or not the method uses it (jobs.create's `filters` and
# `select`, say, are accepted and without effect, as in the query string).
REQUEST_PARAMS = IGNORED_PARAMS | {
    "filters",
    "where",
    "order",
    "select",
    "distinct",
    "limit",
    "offset",
    "count",
    "find_or_create",
}

_TRUE = {"1", "t", "true", "y", "yes", "on"}
_FALSE = {"0", "f", "false", "n", "no", "off", ""}
_INT_RANGE = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOATS = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}
# Integer parameters held to the nearest bound instead of refused (Arvados clamps limit).
_CLAMPED = frozenset({"limit"})
# The largest integer a double (a JSON number in most clients) holds exactly.
_EXACT = 2**53 - 1
_FIELD_MASK = "google.protobuf.FieldMask"
# Rack's nested parameter names: `name[key]`, `name[]`, `name[a][b]`, ...
_BRACKETS = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])+)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_MASK_FIELDS = ("update_mask", "field_mask")


# JSON nested deeper than this is refused: nothing Arvados sends comes near it, and
# protobuf's own parser stops at 100 message levels (a JSON level costs it two).
MAX_JSON_DEPTH = 32


def parse_json(text: str | bytes, name: str) -> Any:
    """json.loads, refusing (by `name`) what is not JSON or is nested too deep."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except _NotFinite:
        raise ApiError.unprocessable(
            f"{name}: numbers must be finite, not NaN or Infinity"
        ) from None
    except RecursionError:
        value = None
        too_deep = True
    except ValueError:
        raise ApiError.unprocessable(f"{name}: not valid JSON") from None
    else:
        too_deep = _depth_exceeds(value, MAX_JSON_DEPTH)
    if too_deep:
        raise ApiError(400, [f"{name}: JSON nested deeper than {MAX_JSON_DEPTH} levels"])
    return value


class _NotFinite(ValueError):
    pass


def _no_constant(text: str) -> Any:
    """Python's json reads NaN and Infinity, which JSON does not have."""
    raise _NotFinite(text)


def _depth_exceeds(value: Any, limit: int) -> bool:
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return True


class _Skip(Exception):
    """The value means "unset" (an empty or `null` query parameter)."""


@dataclass
class HttpInput:
    """What a request carries, before any interpretation."""

    path_variables: Mapping[str, str] = field(default_factory=dict)
    query: Sequence[tuple[str, str]] = ()
    form: Sequence[tuple[str, str]] = ()
    json_body: Any = None
    last_event_id: str | None = None


def build_request(binding: Binding, http: HttpInput) -> Message:
    """The RPC's request message, or an ApiError(422) naming what was wrong."""
    descriptor = binding.method.input_type
    path_bound = {name.split(".")[0] for name in binding.template.variables}
    body_field = binding.body if binding.body not in ("", "*") else None

    params: dict[str, Any] = {}  # raw values, the last source wins (body over query)
    resource: dict[str, Any] = {}

    def take(key: str, value: Any, *, from_json: bool) -> None:
        if body_field is not None and key == body_field:
            resource.update(_resource_object(body_field, value))
            return
        target = field_named(descriptor, key.split(".")[0])
        is_param = target is not None and target.name not in path_bound
        if body_field is not None and from_json and not is_param and key not in REQUEST_PARAMS:
            # A bare attribute (Rails's wrap_parameters): the Python SDK sends updates so.
            resource[key] = value
            return
        if from_json:
            params[key] = value
        else:
            params.setdefault(key, QueryValues()).append(value)

    plain, bracketed = _rack_params([*http.query, *http.form])
    for key, value in plain:
        take(key, value, from_json=False)
    for key, value in bracketed.items():
        # `where[script]=x`, `order[]=a`, `job[priority]=5`: native values, as Rack builds them.
        if body_field is not None and key == body_field:
            resource.update(_resource_object(body_field, value))
            continue
        target = field_named(descriptor, key)
        params[key] = _listed(value) if target is not None and _is_list(target) else value
    if http.json_body is not None:
        if not isinstance(http.json_body, dict):
            raise ApiError.unprocessable("The JSON request body must be an object")
        for key, value in http.json_body.items():
            take(key, value, from_json=True)

    request: dict[str, Any] = {}
    for key, value in params.items():
        if key in IGNORED_PARAMS:
            continue
        _assign(descriptor, request, key.split("."), value, strict=False)
    if body_field is not None and resource:
        request[body_field] = _resource_dict(descriptor.fields_by_name[body_field], resource)
    for name, value in http.path_variables.items():
        _assign(descriptor, request, name.split("."), value, strict=True)
    if http.last_event_id and "after_seq" in descriptor.fields_by_name:
        # An EventSource reconnects with the original URL: the header is the newer position
        # (and a bad one is named as the header the caller sent, not as after_seq).
        target = descriptor.fields_by_name["after_seq"]
        with contextlib.suppress(_Skip):  # (blank: no position)
            request["after_seq"] = coerce(
                target, http.last_event_id.strip(), strict=True, label="Last-Event-ID"
            )

    message = GetMessageClass(descriptor)()
    try:
        json_format.ParseDict(request, message)
    except json_format.ParseError as exc:
        raise ApiError.unprocessable(str(exc)) from None
    _set_update_mask(descriptor, message, body_field, resource, params)
    return message


def _rack_params(
    pairs: Sequence[tuple[str, str]],
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Rails's bracket parameters (Rack's nested query syntax) apart from the plain ones:
    `a[b]=1` is {"a": {"b": "1"}}, `a[]=1&a[]=2` is {"a": ["1", "2"]}, `a[b][c]=1` nests,
    `a[][b]=1` appends objects. Leaves stay strings, as in Rails."""
    plain: list[tuple[str, str]] = []
    nested: dict[str, Any] = {}
    for key, value in pairs:
        found = _BRACKETS.match(key)
        if found is None:
            plain.append((key, value))
            continue
        path = _SEGMENT.findall(found.group(2))
        _nest(nested, found.group(1), path, value, key)
    return plain, nested


def _nest(into: dict[str, Any], name: str, path: list[str], value: str, whole: str) -> None:
    if not path:
        into[name] = value
        return
    head, rest = path[0], path[1:]
    if head:  # a[b]...: an object
        child = into.setdefault(name, {})
        if not isinstance(child, dict):
            raise ApiError.unprocessable(f"{whole}: '{name}' is already a list")
        _nest(child, head, rest, value, whole)
        return
    items = into.setdefault(name, [])  # a[]...: a list
    if not isinstance(items, list):
        raise ApiError.unprocessable(f"{whole}: '{name}' is already an object")
    if not rest:
        items.append(value)
    elif rest[0] and _open_object(items, rest[0]):
        _nest(items[-1], rest[0], rest[1:], value, whole)  # a[][b]=1&a[][c]=2: one object
    elif rest[0]:
        items.append({})
        _nest(items[-1], rest[0], rest[1:], value, whole)
    else:
        raise ApiError.unprocessable(f"{whole}: '[][]' is not a supported parameter form")


def _open_object(items: list[Any], key: str) -> bool:
    return bool(items) and isinstance(items[-1], dict) and key not in items[-1]


def _is_list(target: FieldDescriptor) -> bool:
    return (target.is_repeated and not is_map(target)) or (
        target.type == FieldDescriptor.TYPE_MESSAGE
        and message_of(target).full_name == "google.protobuf.ListValue"
    )


def _listed(value: Any) -> Any:
    """A list parameter given by index (`filters[0][]=a&filters[0][]==&filters[0][]=b`): the
    object Rack makes of it, as a list in index order; a `filters[]` item that is a JSON
    array (`filters[]=["script","=","x"]`) is that condition."""
    if isinstance(value, dict) and value and all(k.isdigit() for k in value):
        value = [value[k] for k in sorted(value, key=int)]
    if not isinstance(value, list):
        return value
    items: list[Any] = []
    for item in value:
        if isinstance(item, str) and item.strip().startswith("["):
            # Unless it is an order or select entry that merely starts with a bracket.
            with contextlib.suppress(ApiError):
                item = parse_json(item, "filters[]")
        items.append(item)
    return items


def _resource_object(name: str, value: Any) -> dict[str, Any]:
    """`job=<JSON>` (form, Perl SDK) or `{"job": {...}}` (JSON): the attributes as a dict."""
    if isinstance(value, list):  # a repeated form parameter: the last one counts
        value = value[-1] if value else None
    if isinstance(value, str):
        value = parse_json(value, name)
    if not isinstance(value, dict):
        raise ApiError.unprocessable(f"No {name} hash provided with request")
    return value


def _resource_dict(body: FieldDescriptor, attrs: Mapping[str, Any]) -> dict[str, Any]:
    wanted = {k: v for k, v in attrs.items() if k not in RESOURCE_METADATA}
    return _message_dict(body, body.name, wanted, strict=True, path="")


def _message_dict(
    field: FieldDescriptor, name: str, attrs: Mapping[str, Any], *, strict: bool, path: str
) -> dict[str, Any]:
    """A JSON object's attributes as `field`'s message fields, each coerced; unknown
    attributes are refused by name. Errors name an attribute by its path below `path`
    (the object's own: `requests[3].job_task` in a batch, `runtime_constraints` in a job;
    "" for the resource a create or update sends, whose attributes go by their bare
    names, as the services name them)."""
    out: dict[str, Any] = {}
    for key, item in attrs.items():
        target = field_named(message_of(field), key)
        if target is None:
            raise ApiError.unprocessable(f"{name}: unknown attribute '{key}'")
        label = f"{path}.{target.name}" if path else target.name
        try:
            out[target.name] = (
                None if item is None else coerce(target, item, strict=strict, label=label)
            )
        except _Skip:
            out[target.name] = None
    return out


def _set_update_mask(
    descriptor: Descriptor,
    message: Message,
    body_field: str | None,
    resource: Mapping[str, Any],
    params: Mapping[str, Any],
) -> None:
    """Update RPCs change what the caller sent: the mask is the attribute names it used.
    Create RPCs with a `field_mask` learn the same way which attributes were given at all."""
    name = next((n for n in _MASK_FIELDS if n in descriptor.fields_by_name), "")
    mask = descriptor.fields_by_name.get(name)
    if body_field is None or mask is None or message_of(mask).full_name != _FIELD_MASK:
        return
    if any(key in params for key in (name, mask.json_name)):
        return
    body = message_of(descriptor.fields_by_name[body_field])
    paths = [
        f.name
        for key in resource
        if key not in RESOURCE_METADATA and (f := field_named(body, key)) is not None
    ]
    getattr(message, name).paths.extend(dict.fromkeys(paths))


def _assign(
    descriptor: Descriptor, out: dict[str, Any], path: list[str], value: Any, *, strict: bool
) -> None:
    """Sets `out[a][b]…` for a dotted parameter name (`worker.node_name=…`, per http.proto)."""
    target = field_named(descriptor, path[0])
    if target is None:
        if strict:
            raise ApiError.unprocessable(f"unknown parameter '{'.'.join(path)}'")
        return  # Arvados ignores parameters it does not know
    if len(path) > 1:
        if target.type != FieldDescriptor.TYPE_MESSAGE or target.is_repeated:
            return
        child = out.setdefault(target.name, {})
        if isinstance(child, dict):
            _assign(message_of(target), child, path[1:], value, strict=strict)
        return
    try:
        out[target.name] = coerce(target, value, strict=strict)
    except _Skip:
        out.pop(target.name, None)


class QueryValues(list[str]):
    """The strings one parameter name had in the query string and form body, in order.

    Kept apart from a JSON array, which is a value in its own right."""


def coerce(
    field: FieldDescriptor, value: Any, *, strict: bool = False, label: str | None = None
) -> Any:
    """`value` (native JSON, or QueryValues) as proto3 JSON for `field`; errors name it
    `label` (its path in the request: the field's name unless given), and an element of
    a list by its index (`requests[3]`)."""
    name = label or field.name
    if field.is_repeated and not is_map(field):
        return [
            _coerce_one(field, v, strict, f"{name}[{i}]")
            for i, v in enumerate(_items(field, value, name))
        ]
    if isinstance(value, QueryValues):
        # A scalar given twice: the last wins, as in Rack. ListValue/Value fields given
        # several times keep them all, as a list.
        value = value if _takes_list(field) and len(value) > 1 else value[-1]
    return _coerce_one(field, value, strict, name)


def _takes_list(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and message_of(field).full_name in (
        "google.protobuf.ListValue",
        "google.protobuf.Value",
    )


def _items(field: FieldDescriptor, value: Any, name: str) -> list[Any]:
    """A repeated field's elements: a JSON array string, a comma string or repeated params."""
    raw = value if isinstance(value, list) else [value]
    from_query = isinstance(value, QueryValues | str)
    items: list[Any] = []
    for item in raw:
        if isinstance(item, str) and from_query:
            text = item.strip()
            if text.startswith("["):
                parsed = parse_json(text, name)
                items.extend(parsed if isinstance(parsed, list) else [parsed])
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                items.append(item)
            elif text:
                items.extend(p.strip() for p in text.split(",") if p.strip())
        else:
            items.append(item)
    return items


def _coerce_one(field: FieldDescriptor, value: Any, strict: bool, name: str) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return _coerce_message(field, value, strict, name)
    if isinstance(value, str) and value.strip() in ("", "null") and kind in (*_INT_RANGE, *_FLOATS):
        raise _Skip
    if kind == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ApiError.unprocessable(f"{name}: invalid boolean value {_show(value)}")
    if kind in _INT_RANGE:
        low, high = _INT_RANGE[kind]
        number: int
        if isinstance(value, bool):
            raise ApiError.unprocessable(f"{name}: invalid integer value {_show(value)}")
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT:
            number = int(value)
        elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            number = int(value.strip())
        else:
            raise ApiError.unprocessable(f"{name}: invalid integer value {_show(value)}")
        if field.name in _CLAMPED:
            # Arvados's SDK pages with limit=sys.maxsize; the server clamps it further.
            return min(max(number, low), high)
        if not low <= number <= high:
            raise ApiError.unprocessable(
                f"{name}: {_show(value)} is out of range ({low} to {high})"
            )
        return number
    if kind in _FLOATS:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ApiError.unprocessable(f"{name}: invalid number {_show(value)}") from None
    if kind == FieldDescriptor.TYPE_ENUM:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        found = enum_value_by_wire_name(enum_of(field), str(value))
        if found is None:
            raise ApiError.unprocessable(f"{name}: invalid value {_show(value)}")
        return found.name
    if isinstance(value, dict | list):
        raise ApiError.unprocessable(f"{name}: expected a string, got {_show(value)}")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _coerce_message(field: FieldDescriptor, value: Any, strict: bool, name: str) -> Any:
    type_name = message_of(field).full_name
    if type_name in JSON_VALUED:
        if isinstance(value, str):
            text = value.strip()
            looks_json = text[:1] in ("[", "{", '"') or text in ("null", "true", "false")
            if type_name != "google.protobuf.Value" or looks_json:
                value = parse_json(text, name) if text else None
        if value is None and type_name != "google.protobuf.Value":
            raise _Skip
        if type_name == "google.protobuf.Struct" and not isinstance(value, dict):
            raise ApiError.unprocessable(f"{name}: must be a JSON object, got {_show(value)}")
        if type_name == "google.protobuf.ListValue" and not isinstance(value, list):
            raise ApiError.unprocessable(f"{name}: must be a JSON array, got {_show(value)}")
        return value
    if type_name.startswith("google.protobuf."):
        if type_name == "google.protobuf.Duration" and isinstance(value, int | float):
            return f"{value}s"  # plain seconds are friendlier than "30s" in a query string
        return value  # Timestamp, Duration, FieldMask, wrappers: proto3 JSON strings
    if isinstance(value, str):
        value = parse_json(value, name)
    if not isinstance(value, dict):
        raise ApiError.unprocessable(f"{name}: must be a JSON object, got {_show(value)}")
    return _message_dict(field, name, value, strict=strict, path=name)


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
