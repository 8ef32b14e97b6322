"""The one endpoint behind every `/arvados/v1/...` path: HTTP in, gRPC call, Arvados JSON out."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from jobtask.gateway import sse
from jobtask.gateway.channels import ServiceChannels
from jobtask.gateway.discovery import MAX_REQUEST_SIZE
from jobtask.gateway.errors import ApiError, error_body, error_token, from_rpc_error
from jobtask.gateway.params import HttpInput, build_request, parse_json
from jobtask.gateway.rendering import dumps, render, render_value, select_attributes
from jobtask.gateway.routing import Binding, RouteTable
from jobtask.observability.logs import REQUEST_ID_KEY
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

__all__ = ["Dispatcher", "error_response", "token_of"]

log = logging.getLogger(__name__)

_OVERRIDABLE = {"GET", "HEAD", "PUT", "PATCH", "DELETE"}
_AUTH_HEADER = re.compile(r"^\s*(?:OAuth2|Bearer)\s+(\S+)\s*$", re.IGNORECASE)
JSON_TYPE = "application/json"
# Arvados tokens are under 100 characters; one this long cannot exist, and forwarding it
# would overflow the services' metadata limit (16 KiB) into a misleading 429.
MAX_TOKEN = 4096


def error_response(err: ApiError, *, head: bool = False) -> Response:
    body = b"" if head else dumps(error_body(err.errors, err.error_token))
    return Response(body, err.status, headers=err.headers, media_type=JSON_TYPE)


def token_of(request: Request, params: list[tuple[str, str]], json_body: Any) -> str | None:
    """Arvados's order: `api_token`, then `oauth_token` parameters, then the header."""
    for name in ("api_token", "oauth_token"):
        if isinstance(json_body, dict) and isinstance(json_body.get(name), str):
            return str(json_body[name])
        values = [v for k, v in params if k == name and v]
        if values:
            return values[-1]
    found = _AUTH_HEADER.match(request.headers.get("authorization", ""))
    return found.group(1) if found else None


class Dispatcher:
    def __init__(self, routes: RouteTable, channels: ServiceChannels) -> None:
        self.routes = routes
        self.channels = channels

    async def handle(self, request: Request) -> Response:
        head = request.method == "HEAD"
        try:
            return await self._dispatch(request)
        except ApiError as err:
            return error_response(err, head=head)
        except grpc.aio.AioRpcError as err:
            return error_response(from_rpc_error(err), head=head)
        except Exception:
            # Log the trace here, under an error id; the caller gets only the id.
            found = error_token()
            log.exception(
                "request %s failed (error id %s)",
                getattr(request.state, "request_id", "?"),
                found,
            )
            failure = ApiError(500, [f"Internal error (error id {found})"], error_token=found)
            return error_response(failure, head=head)
        finally:
            if not hasattr(request.state, "route"):
                # Answered before routing (a preflight, a body refused): the path's template.
                request.state.route = self.routes.match("", _raw_path(request)).template

    async def _dispatch(self, request: Request) -> Response:
        path = _raw_path(request)
        method = request.method
        if method == "OPTIONS":
            if path.startswith("/arvados/v1/"):
                return Response(b"", 200)  # CORS preflight; the middleware adds the headers
            raise ApiError(404, ["Path not found"])

        query = parse_qsl(request.url.query, keep_blank_values=True)
        form, json_body = await _read_body(request)
        if method == "POST":
            method = _overridden(request, query, form, json_body) or method
        match = self.routes.match("GET" if method == "HEAD" else method, path)
        request.state.route = match.template  # the access log's label (None: unmatched)
        if match.binding is None:
            if match.allowed:
                allowed = _allow(match.allowed)
                raise ApiError(
                    405,
                    [f"Method {method} not allowed here; allowed: {allowed}"],
                    headers={"Allow": allowed},
                )
            raise ApiError(404, ["Path not found"])
        binding = match.binding
        if not binding.served:
            others = self.routes.match("", path).allowed  # every method bound to this path
            raise ApiError(
                405,
                [f"{binding.method.full_name} streams in both directions: call it over gRPC"],
                headers={"Allow": _allow([m for m in others if m != method])},
            )

        http = HttpInput(
            path_variables=match.variables,
            query=query,
            form=form,
            json_body=json_body,
            last_event_id=request.headers.get("last-event-id"),
        )
        message = build_request(binding, http)
        metadata = [(REQUEST_ID_KEY, request.state.request_id)]
        token = token_of(request, [*query, *form], json_body)
        if token:
            if len(token) > MAX_TOKEN or not all("!" <= ch <= "~" for ch in token):
                raise ApiError(401, ["Not logged in"])  # no such token can exist
            metadata.append(("authorization", f"Bearer {token}"))

        if binding.server_streaming:
            return await self._stream(binding, message, metadata)
        response = await self.channels.unary(binding.method, message, metadata)
        body = _render_response(binding, message, response)
        return Response(b"" if method == "HEAD" else dumps(body), 200, media_type=JSON_TYPE)

    async def _stream(
        self, binding: Binding, message: Message, metadata: list[tuple[str, str]]
    ) -> Response:
        sse.pack_events(message)
        call = self.channels.stream(binding.method, message, metadata)
        first = await sse.start(call)
        return StreamingResponse(
            sse.event_stream(call, first),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(sse.stop, call, first),
        )


def _allow(methods: list[str] | tuple[str, ...]) -> str:
    """RFC 9110's Allow value; HEAD goes wherever GET does."""
    return ", ".join([*methods, *(["HEAD"] if "GET" in methods else [])])


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        # Path variables are decoded by the template match, once; only `/` needs to be kept.
        return raw.decode("latin-1").split("?", 1)[0]
    return str(request.url.path)


async def _limited_body(request: Request) -> bytes:
    """The body, refused with 413 past MAX_REQUEST_SIZE (what discovery advertises), before
    more than that is held in memory."""
    too_large = ApiError(413, [f"The request body is larger than {MAX_REQUEST_SIZE} bytes"])
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_REQUEST_SIZE:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_SIZE:
            raise too_large
        chunks.append(chunk)
    raw = b"".join(chunks)
    # Where Starlette keeps a body already read: request.form() parses it from there.
    request._body = raw
    return raw


async def _read_body(request: Request) -> tuple[list[tuple[str, str]], Any]:
    raw = await _limited_body(request)
    if not raw.strip():
        return [], None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        return parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True), None
    if content_type in ("", "text/plain") or content_type.endswith("json"):
        try:
            return [], parse_json(raw, "the request body")
        except ApiError as err:
            if content_type.endswith("json") or err.status != 422:
                raise
            # curl -d sends form data without saying so; take it as a form.
            return parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True), None
    if content_type == "multipart/form-data":
        return await _multipart_fields(request), None
    raise ApiError(415, [f"Unsupported content type {content_type}"])


async def _multipart_fields(request: Request) -> list[tuple[str, str]]:
    """A multipart/form-data body's fields, as a urlencoded body's: a file part (`curl -F
    job=@job.json`) counts as a field holding the file's text."""
    try:
        form = await request.form(max_files=100, max_fields=10_000, max_part_size=MAX_REQUEST_SIZE)
    except (MultiPartException, HTTPException):
        raise ApiError.unprocessable("The multipart/form-data body is malformed") from None
    fields: list[tuple[str, str]] = []
    try:
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields.append((key, value))
            else:
                content = await value.read()
                fields.append((key, content.decode("utf-8", errors="replace")))
    finally:
        await form.close()
    return fields


def _overridden(
    request: Request,
    query: list[tuple[str, str]],
    form: list[tuple[str, str]],
    json_body: Any,
) -> str | None:
    """POST + `_method=GET` (query or body) or `X-HTTP-Method-Override`, as Rack and Go do."""
    candidates = [v for k, v in (*form, *query) if k == "_method"]
    if isinstance(json_body, dict) and isinstance(json_body.get("_method"), str):
        candidates.append(json_body["_method"])
    candidates.append(request.headers.get("x-http-method-override", ""))
    for value in candidates:
        if value.strip().upper() in _OVERRIDABLE:
            return value.strip().upper()
    return None


def _render_response(binding: Binding, request: Message, response: Message) -> Any:
    if binding.response_body:
        field = response.DESCRIPTOR.fields_by_name[binding.response_body]
        value = getattr(response, field.name)
        return render_value(value) if field.type == FieldDescriptor.TYPE_MESSAGE else value
    body = render(response)
    select = _selected(request)
    if select:
        # A list's items, or the tasks a batch_create made (its `select`): the attributes
        # selected, not every attribute with the unselected ones at their defaults.
        for name in _SELECTED_LISTS:
            if isinstance(body.get(name), list):
                body[name] = [select_attributes(item, select) for item in body[name]]
    return body


# The lists of objects a request's `select` trims: a list's, BatchCreateTasks's.
_SELECTED_LISTS = ("items", "job_tasks")


def _selected(request: Message) -> list[str]:
    field = request.DESCRIPTOR.fields_by_name.get("select")
    if field is None or not field.is_repeated or field.type != FieldDescriptor.TYPE_STRING:
        return []
    generated: Any = request  # the generated class has select; Message does not say so
    return [str(s) for s in generated.select]
