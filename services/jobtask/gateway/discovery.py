"""Arvados's discovery document (`/discovery/v1/apis/arvados/v1/rest`), from the route table.

googleapiclient builds the Python SDK's `api.jobs().list(...)` from it: every method needs
`id`, `path`, `httpMethod` and every parameter a caller may pass (an undeclared keyword is a
TypeError in the client), declared `array`/`object` where the SDK must JSON-encode it.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from jobtask.gateway.descriptors import enum_of, is_message, message_of
from jobtask.gateway.naming import enum_wire_name, snake_case, uuid_infix, words
from jobtask.gateway.routing import Binding, RouteTable

__all__ = [
    "ARVADOS_DEFAULTS",
    "discovery_document",
    "method_name",
    "query_fields",
    "schema_name",
]

API_PREFIX = "/arvados/v1/"
MAX_ITEMS_PER_RESPONSE = 1000
# Bodies the gateway accepts (advertised as discovery's maxRequestSize, enforced with 413):
# the services' gRPC message limit (jobtask.server.app.MAX_MESSAGE_BYTES), which a larger
# body could not pass anyway. Arvados advertises 128 MiB.
MAX_REQUEST_SIZE = 16 * 1024 * 1024
# Defaults Arvados declares for its list parameters, stringified as its discovery does
# ("The JAVA SDK is sensitive to all values being strings").
ARVADOS_DEFAULTS = {"limit": "100", "offset": "0", "count": "exact", "distinct": "false"}
# Accepted and ignored by the gateway, declared so SDK calls that pass them still work.
_LIST_EXTRAS = {
    "cluster_id": {"type": "string", "location": "query", "description": "Ignored."},
    "bypass_federation": {"type": "boolean", "location": "query", "default": "false"},
}
_CREATE_EXTRAS = {
    "cluster_id": {"type": "string", "location": "query", "description": "Ignored."},
    "ensure_unique_name": {"type": "boolean", "location": "query", "default": "false"},
}
_SCOPES = [
    "https://api.arvados.org/auth/arvados",
    "https://api.arvados.org/auth/arvados.readonly",
]


def method_name(binding: Binding) -> str:
    """The RPC name without the resource's noun: ListJobs→list, GetTask→get, QueueSize→queue_size.

    Arvados's own names (list, get, create, update, delete, queue, queue_size, cancel, lock)
    come out of the proto's RPC names this way.
    """
    nouns: set[str] = set()
    for word in binding.resource.split("_"):
        nouns |= {word, word.removesuffix("s")}
    kept = [w for w in words(binding.method.name) if w.lower() not in nouns]
    return "_".join(w.lower() for w in kept) or snake_case(binding.method.name)


def schema_name(message: Descriptor) -> str:
    """`Job`; a list envelope (a `repeated items` field) is `<item>List`, as Arvados names it."""
    items = message.fields_by_name.get("items")
    if items is not None and items.is_repeated and is_message(items):
        return schema_name(message_of(items)) + "List"
    return message.name


def query_fields(binding: Binding) -> list[FieldDescriptor]:
    """Request fields taken from the query string: neither path-bound nor the body."""
    if binding.body == "*":
        return []
    bound = {v.split(".")[0] for v in binding.template.variables}
    return [
        f
        for f in binding.method.input_type.fields
        if f.name not in bound and f.name != binding.body
    ]


def _field_parameter(field: FieldDescriptor) -> dict[str, Any] | None:
    param = _arvados_type(field)
    if param is None:
        return None
    param["location"] = "query"
    param["required"] = False
    if field.name in ARVADOS_DEFAULTS:
        param["default"] = ARVADOS_DEFAULTS[field.name]
    return param


def _arvados_type(field: FieldDescriptor) -> dict[str, Any] | None:
    """The discovery type of a parameter; None for what a query string cannot carry."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        full = message_of(field).full_name
        if full == "google.protobuf.Struct":
            return {"type": "object"}
        if full == "google.protobuf.ListValue":
            return {"type": "array"}
        if full in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
            return {"type": "string"}
        return None
    scalar = scalar_schema(field)
    if field.is_repeated:
        return {"type": "array", "items": scalar}
    return scalar


def scalar_schema(field: FieldDescriptor) -> dict[str, Any]:
    """A scalar field's JSON schema, shared by discovery and the OpenAPI document."""
    if field.type == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if field.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_UINT32):
        return {"type": "integer", "format": "int32"}
    if field.cpp_type in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
        return {"type": "integer", "format": "int64"}
    if field.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return {"type": "number"}
    if field.type == FieldDescriptor.TYPE_ENUM:
        return {"type": "string", "enum": [enum_wire_name(v) for v in enum_of(field).values]}
    if field.type == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "format": "byte"}
    return {"type": "string"}


def _method_entry(binding: Binding, resource: str, name: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    order: list[str] = []
    for var in binding.template.variables:
        params[var] = {"type": "string", "required": True, "location": "path"}
        order.append(var)
    for field in query_fields(binding):
        param = _field_parameter(field)
        if param is not None:
            params[field.name] = param
    if "filters" in params:
        params.update({k: dict(v) for k, v in _LIST_EXTRAS.items() if k not in params})
    if binding.body not in ("", "*") and not order:
        params.update({k: dict(v) for k, v in _CREATE_EXTRAS.items() if k not in params})
    entry: dict[str, Any] = {
        "id": f"arvados.{resource}.{name}",
        "path": binding.template.text.removeprefix(API_PREFIX),
        "httpMethod": binding.http_method,
        "description": f"{binding.method.full_name}",
        "parameters": params,
        "parameterOrder": order,
        "response": {"$ref": schema_name(binding.method.output_type)},
        "scopes": _SCOPES,
    }
    if binding.body == "*":
        entry["request"] = {"$ref": schema_name(binding.method.input_type)}
    elif binding.body:
        body = binding.method.input_type.fields_by_name[binding.body]
        entry["request"] = {
            "required": True,
            "properties": {binding.body: {"$ref": schema_name(message_of(body))}},
        }
    if binding.server_streaming:
        entry["description"] += " (served as text/event-stream)"
    return entry


def _schema(message: Descriptor) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for field in message.fields:
        properties[field.name] = _property(field)
    schema: dict[str, Any] = {
        "id": schema_name(message),
        "description": message.full_name,
        "type": "object",
        "properties": properties,
    }
    if "uuid" in message.fields_by_name and "kind" in message.fields_by_name:
        schema["uuidPrefix"] = uuid_infix(message.name)
    return schema


def _property(field: FieldDescriptor) -> dict[str, Any]:
    """Arvados's column types: string, datetime, boolean, integer, float, Hash, Array."""
    if field.is_repeated and field.type == FieldDescriptor.TYPE_MESSAGE:
        if message_of(field).GetOptions().map_entry:
            return {"type": "Hash"}
        return {"type": "array", "items": {"$ref": schema_name(message_of(field))}}
    if field.is_repeated:
        return {"type": "Array"}
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        full = message_of(field).full_name
        if full == "google.protobuf.Timestamp":
            return {"type": "datetime"}
        if full == "google.protobuf.ListValue":
            return {"type": "Array"}
        if full.startswith("google.protobuf."):
            return {"type": "Hash"} if full == "google.protobuf.Struct" else {"type": "string"}
        return {"type": "Hash"}
    if field.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return {"type": "float"}
    return {k: v for k, v in scalar_schema(field).items() if k != "format"}


def referenced_messages(routes: RouteTable) -> list[Descriptor]:
    """Every message a served method takes or returns, and the messages they contain."""
    seen: dict[str, Descriptor] = {}

    def visit(message: Descriptor) -> None:
        if message.full_name in seen or message.full_name.startswith("google.protobuf."):
            return
        if message.GetOptions().map_entry:
            return
        seen[message.full_name] = message
        for field in message.fields:
            if is_message(field):
                visit(message_of(field))

    for binding in routes.bindings:
        if binding.served:
            visit(binding.method.output_type)
            if binding.body == "*":
                visit(binding.method.input_type)
            elif binding.body:
                visit(message_of(binding.method.input_type.fields_by_name[binding.body]))
    return list(seen.values())


def resources(routes: RouteTable) -> dict[str, dict[str, Binding]]:
    """resource -> method name -> primary binding; additional bindings stay out of discovery."""
    out: dict[str, dict[str, Binding]] = {}
    ordered = sorted(
        (b for b in routes.bindings if b.primary and b.served),
        key=lambda b: (b.service.index, b.method.index),
    )
    for binding in ordered:
        methods = out.setdefault(binding.resource, {})
        name = method_name(binding)
        if name in methods:
            name = snake_case(binding.method.name)  # two RPCs would share a name
        methods[name] = binding
    return out


def discovery_document(routes: RouteTable, *, cluster_id: str) -> dict[str, Any]:
    """The document without `rootUrl`/`baseUrl`, which depend on the request's host."""
    resource_entries = {
        resource: {
            "methods": {
                name: _method_entry(binding, resource, name) for name, binding in methods.items()
            }
        }
        for resource, methods in resources(routes).items()
    }
    schemas = {schema_name(m): _schema(m) for m in referenced_messages(routes)}
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "arvados:v1",
        "name": "arvados",
        "version": "v1",
        "revision": "20240101",
        "title": "jobtask (Arvados Jobs API)",
        "description": "The Arvados Jobs and JobTasks API, served by the jobtask gateway.",
        "documentationLink": "https://doc.arvados.org/api/",
        "protocol": "rest",
        "basePath": API_PREFIX,
        "servicePath": API_PREFIX.lstrip("/"),
        "batchPath": "batch",
        "uuidPrefix": cluster_id,
        "maxRequestSize": MAX_REQUEST_SIZE,
        "maxItemsPerResponse": MAX_ITEMS_PER_RESPONSE,
        "defaultCollectionReplication": 2,
        "blobSignatureTtl": 1209600,
        "parameters": {
            "alt": {
                "type": "string",
                "description": "Data format for the response.",
                "default": "json",
                "enum": ["json"],
                "enumDescriptions": ["Responses with Content-Type of application/json"],
                "location": "query",
            },
            "fields": {
                "type": "string",
                "description": "Selector specifying which fields to include in a partial response.",
                "location": "query",
            },
            "key": {
                "type": "string",
                "description": "API key. Your API key identifies your project.",
                "location": "query",
            },
            "oauth_token": {
                "type": "string",
                "description": "OAuth 2.0 token for the current user.",
                "location": "query",
            },
        },
        "auth": {
            "oauth2": {
                "scopes": {
                    _SCOPES[0]: {"description": "View and manage objects"},
                    _SCOPES[1]: {"description": "View objects"},
                }
            }
        },
        "schemas": schemas,
        "resources": resource_entries,
    }
