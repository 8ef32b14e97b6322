"""An OpenAPI 3.0 document of the HTTP API, from the same route table as discovery.

It describes what the gateway really sends: Arvados JSON (snake_case, int64 as numbers, unset
optional attributes as null, hyphenated enum names), the error body, and the SSE streams.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from jobtask.gateway.descriptors import message_of
from jobtask.gateway.discovery import (
    ARVADOS_DEFAULTS,
    method_name,
    query_fields,
    referenced_messages,
    scalar_schema,
    schema_name,
)
from jobtask.gateway.routing import Binding, RouteTable

__all__ = ["openapi_document"]

_ERROR_STATUSES = {
    "401": "No valid token",
    "403": "The token may not do this",
    "404": "No such object, or not readable",
    "405": "The path does not accept this method",
    "415": "The request body is neither JSON nor a form",
    "422": "The request is invalid or conflicts with the object's state",
    "429": "Too many requests",
    "503": "The service is unavailable; retry",
}
_JSON = "application/json"
# A text/event-stream schema describes one event (OpenAPI 3.2's itemSchema; tools read 3.0's
# `schema` so too), not the body as one string.
_SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The event's seq: resume with Last-Event-ID."},
        "event": {"type": "string", "description": "`error` for an Error, else a WatchEvent."},
        "data": {"type": "string", "description": "The WatchEvent (or Error) as JSON."},
    },
    "required": ["data"],
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref("Error")}}}


def _message_schema(message: Descriptor) -> dict[str, Any]:
    full = message.full_name
    if full == "google.protobuf.Timestamp":
        return {"type": "string", "format": "date-time"}
    if full == "google.protobuf.Struct":
        return {"type": "object", "additionalProperties": True}
    if full == "google.protobuf.ListValue":
        return {"type": "array", "items": {}}
    if full == "google.protobuf.Value":
        return {}
    if full.startswith("google.protobuf."):
        return {"type": "string"}  # Duration, FieldMask: their proto3 JSON strings
    return _ref(schema_name(message))


def _field_schema(field: FieldDescriptor) -> dict[str, Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE and message_of(field).GetOptions().map_entry:
        value = message_of(field).fields_by_name["value"]
        return {"type": "object", "additionalProperties": _field_schema(value)}
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        one = _message_schema(message_of(field))
    else:
        one = scalar_schema(field)
    if field.is_repeated:
        return {"type": "array", "items": one}
    if field.has_presence:
        if "$ref" in one:
            return {"allOf": [one], "nullable": True}
        if one:
            return {**one, "nullable": True}
    return one


def _component(message: Descriptor) -> dict[str, Any]:
    return {
        "type": "object",
        "description": message.full_name,
        "properties": {f.name: _field_schema(f) for f in message.fields},
        # Unknown attributes are rejected (422), as Arvados rejects them.
        "additionalProperties": False,
    }


def _query_parameter(field: FieldDescriptor) -> dict[str, Any] | None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        full = message_of(field).full_name
        if full in ("google.protobuf.Struct", "google.protobuf.ListValue"):
            kind = "object" if full.endswith("Struct") else "array"
            schema: dict[str, Any] = {"type": "string", "description": f"a JSON {kind}"}
        elif full in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
            schema = {"type": "string"}
        else:
            return None
    elif field.is_repeated:
        schema = {"type": "array", "items": scalar_schema(field)}
    else:
        schema = scalar_schema(field)
    # Out-of-range integers are clamped, not rejected (the Arvados SDK sends sys.maxsize).
    schema.pop("format", None)
    if field.name in ARVADOS_DEFAULTS and schema.get("type") != "array":
        default: Any = ARVADOS_DEFAULTS[field.name]
        if schema.get("type") == "integer":
            default = int(default)
        elif schema.get("type") == "boolean":
            default = default == "true"
        schema["default"] = default
    param: dict[str, Any] = {"name": field.name, "in": "query", "required": False}
    param["schema"] = schema
    if field.is_repeated:
        param.update(style="form", explode=True)
    return param


def _operation(binding: Binding) -> dict[str, Any]:
    name = f"{binding.resource}.{method_name(binding)}"
    if not binding.primary:
        name += f".{binding.http_method.lower()}"
    parameters: list[dict[str, Any]] = [
        {
            "name": var,
            "in": "path",
            "required": True,
            # An empty segment is another route: `/jobs/` is the list, as in Rails.
            "schema": {"type": "string", "minLength": 1},
        }
        for var in binding.template.variables
    ]
    for field in query_fields(binding):
        param = _query_parameter(field)
        if param is not None:
            parameters.append(param)
    if binding.server_streaming:
        parameters.append(
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Resume after this event (the request's after_seq).",
            }
        )
        ok = {
            "description": "Server-Sent Events: `id: <seq>`, `data: <event JSON>`",
            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
        }
    else:
        ok = {
            "description": "OK",
            "content": {_JSON: {"schema": _ref(schema_name(binding.method.output_type))}},
        }
    op: dict[str, Any] = {
        "operationId": name,
        "summary": binding.method.full_name,
        "tags": [binding.resource],
        "parameters": parameters,
        "responses": {
            "200": ok,
            **{code: _error_response(text) for code, text in _ERROR_STATUSES.items()},
            "default": _error_response("Error"),
        },
    }
    if binding.body == "*":
        schema = _ref(schema_name(binding.method.input_type))
    elif binding.body:
        body_type = message_of(binding.method.input_type.fields_by_name[binding.body])
        schema = {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {binding.body: _ref(schema_name(body_type))},
                    "required": [binding.body],
                },
                _ref(schema_name(body_type)),
            ]
        }
    else:
        return op
    op["requestBody"] = {"required": binding.body != "*", "content": {_JSON: {"schema": schema}}}
    return op


def _openapi_path(binding: Binding) -> str:
    """http.proto's `{var=pattern}` becomes OpenAPI's `{var}`."""
    text = binding.template.text
    for var in binding.template.variables:
        start = text.find("{" + var)
        end = text.find("}", start)
        text = text[:start] + "{" + var + "}" + text[end + 1 :]
    return text


def openapi_document(routes: RouteTable) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for binding in sorted(routes.bindings, key=lambda b: (b.service.index, b.method.index)):
        if binding.served:
            path = paths.setdefault(_openapi_path(binding), {})
            path[binding.http_method.lower()] = _operation(binding)
    schemas = {schema_name(m): _component(m) for m in referenced_messages(routes)}
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "errors": {"type": "array", "items": {"type": "string"}},
            "error_token": {"type": "string"},
        },
        "required": ["errors", "error_token"],
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "jobtask REST gateway (Arvados Jobs API)",
            "version": "v1",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "oauth2Header": {"type": "apiKey", "in": "header", "name": "Authorization"},
            },
        },
        "security": [{}, {"bearer": []}, {"oauth2Header": []}],
    }
