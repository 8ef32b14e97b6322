"""Server-streaming RPCs as Server-Sent Events.

Each message becomes `id: <seq>` + `data: <json>`, so a browser's EventSource (or any client)
resumes after a drop by sending `Last-Event-ID`, which becomes the request's `after_seq`.
An error after the response has started cannot change the HTTP status any more: it is sent
as `event: error` with Arvados's error body, and the stream ends.

Streams that can pack several events per message (a request field `max_events_per_message`,
the watches) are asked to (`pack_events`), and each packed event still becomes an SSE event
of its own: HTTP clients see one event per message as before, with fewer gRPC messages
between the gateway and the services when a watcher lags.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc.aio import EOF  # type: ignore[attr-defined]  # missing from grpc-stubs
from jobtask.gateway.channels import note_caller
from jobtask.gateway.errors import error_body, from_rpc_error
from jobtask.gateway.rendering import dumps, render

__all__ = ["FirstRead", "encode_event", "event_stream", "pack_events", "start", "stop"]


FirstRead = asyncio.Task[Any]
PACK_FIELD = "max_events_per_message"
PACKED_FIELD = "more"
EVENTS_PER_MESSAGE = 256


def pack_events(request: Message) -> None:
    """Opts the request in to packed events where its RPC offers them (whatever the HTTP
    client asked: the gateway unpacks them)."""
    if PACK_FIELD in request.DESCRIPTOR.fields_by_name:
        setattr(request, PACK_FIELD, EVENTS_PER_MESSAGE)


def unpacked(message: Message) -> list[Message]:
    """The message's events: itself, then those packed in its `more` (cleared)."""
    if PACKED_FIELD not in message.DESCRIPTOR.fields_by_name:
        return [message]
    rest = list(getattr(message, PACKED_FIELD))
    if not rest:
        return [message]
    message.ClearField(PACKED_FIELD)
    return [message, *rest]


def encode_event(message: Message) -> bytes:
    rendered = render(message)
    # Always empty here (see unpacked): not part of an SSE event.
    rendered.pop(PACKED_FIELD, None)
    data = dumps(rendered).decode()
    lines = []
    seq = getattr(message, "seq", None)
    if isinstance(seq, int) and seq > 0:
        lines.append(f"id: {seq}")
    lines.append(f"data: {data}")
    return ("\n".join(lines) + "\n\n").encode()


def encode_error(errors: list[str]) -> bytes:
    return b"event: error\ndata: " + dumps(error_body(errors)) + b"\n\n"


async def start(call: grpc.aio.UnaryStreamCall[Any, Any]) -> FirstRead:
    """Starts reading once the service accepted the call, so a refused one (bad token, unknown
    job, too old a position) raises its error here and gets its HTTP status. The watch RPCs
    send their headers as soon as the request passed its checks, before any event; a stream
    that is refused ends without headers (a trailers-only response)."""
    first: FirstRead = asyncio.ensure_future(call.read())
    headers = asyncio.ensure_future(call.initial_metadata())
    try:
        await asyncio.wait({first, headers}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        headers.cancel()
    if headers.done() and not headers.cancelled() and headers.exception() is None:
        note_caller(headers.result())  # the access line's caller (jobtask.server.callers)
    if first.done() or call.done():
        await asyncio.wait({first})
        first.result()  # raises AioRpcError for a refused request
    return first


async def event_stream(
    call: grpc.aio.UnaryStreamCall[Any, Any], first: FirstRead
) -> AsyncIterator[bytes]:
    """The SSE body; cancels the gRPC call when the HTTP client goes away."""
    try:
        message = await first
        while message is not EOF:
            for event in unpacked(message):
                yield encode_event(event)
            message = await call.read()
    except grpc.aio.AioRpcError as err:
        # Our own cancellation arrives as CancelledError, so any status here is the service's.
        yield encode_error(from_rpc_error(err).errors)
    finally:
        stop(call, first)


def stop(call: grpc.aio.UnaryStreamCall[Any, Any], first: FirstRead) -> None:
    """Ends the gRPC side; also run after the response, for a body that never started."""
    call.cancel()
    if not first.done():
        first.cancel()
    elif not first.cancelled():
        first.exception()  # retrieved, so asyncio does not log it as lost
