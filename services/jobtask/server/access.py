"""Access logs and RPC metrics of the jobtask services: one interceptor, outside the auth
interceptor so refused calls are counted too.

Each call of a jobtask RPC gets one `jobtask.access` line when it ends: method, code,
duration, the caller's user uuid (never a token) and the request id the gateway forwarded as
`x-request-id` metadata (or one of the client's own; else one made here, in the gateway's
form). The id is also set for every log line written while the call runs, and returned in
the call's `x-request-id` trailing metadata."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from jobtask.observability import metrics
from jobtask.observability.logs import (
    ACCESS,
    REQUEST_ID_KEY,
    given_request_id,
    new_request_id,
    request_id,
)
from jobtask.server.callers import current_credentials

__all__ = ["AccessInterceptor"]

_PROTECTED_PREFIX = "/jobtask."

Context = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor


def _request_id(context: Context) -> str:
    """The caller's request id, else a new one: every access line has one."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY:
            given = given_request_id(value)
            if given is not None:
                return given
    return new_request_id()


def _caller() -> str | None:
    try:
        return current_credentials().caller.user_uuid
    except Exception:  # refused before the auth interceptor bound anybody
        return None


def _stream_kind(method: str) -> str | None:
    name = method.rpartition("/")[2]
    if name == "RunTask":
        return "run"
    if name == "WorkerSession":
        return "session"
    if name.startswith("Watch"):
        return "watch"
    return None


class _Call:
    """One call's clock, request id and end."""

    def __init__(self, method: str, context: Context) -> None:
        self.method = method
        self.context = context
        self.started = time.perf_counter()
        # Not reset at the end: grpc.aio runs each call in a task (and context) of its own.
        rid = _request_id(context)
        request_id.set(rid)
        # Answered as the gateway answers X-Request-Id, so a caller can quote the id its
        # call was logged under. In the trailers: a watch stream's handler sends headers of
        # its own (callers.send_caller_headers), and an abort keeps what is set here.
        context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
        self.kind = _stream_kind(method)
        if self.kind:
            metrics.OPEN_STREAMS.labels(self.kind).inc()

    def end(self, exc: BaseException | None) -> None:
        seconds = time.perf_counter() - self.started
        if self.kind:
            metrics.OPEN_STREAMS.labels(self.kind).dec()
        # None until the call has ended with a code (the stubs say otherwise).
        code: grpc.StatusCode | None = self.context.code()
        if code is None:
            if exc is None:
                code = grpc.StatusCode.OK
            elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
                # GeneratorExit: grpc closed a streaming handler whose client went away.
                code = grpc.StatusCode.CANCELLED
            else:
                code = grpc.StatusCode.UNKNOWN
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        metrics.RPCS.labels(self.method, name).inc()
        metrics.RPC_SECONDS.labels(self.method).observe(seconds)
        if ACCESS.isEnabledFor(logging.INFO):
            fields = {"method": self.method, "code": name, "duration_ms": round(seconds * 1000, 1)}
            caller = _caller()
            if caller:
                fields["caller_uuid"] = caller
            ACCESS.info("rpc", extra={"fields": fields})


class AccessInterceptor(_Interceptor):
    def __init__(self) -> None:
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(_PROTECTED_PREFIX):
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped[method] = _observed(handler, method)
        return wrapped


def _observed(handler: Handler, method: str) -> Handler:
    kinds: dict[tuple[bool, bool], tuple[Any, Callable[..., Handler]]] = {
        (False, False): (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        (False, True): (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (True, False): (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (True, True): (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    }
    inner, make = kinds[(bool(handler.request_streaming), bool(handler.response_streaming))]
    behaviour: Callable[..., Any]
    if inspect.iscoroutinefunction(inner) or not handler.response_streaming:

        async def unary_behaviour(request: Any, context: Context) -> Any:
            call = _Call(method, context)
            failure: BaseException | None = None
            try:
                return await inner(request, context)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                call.end(failure)

        behaviour = unary_behaviour
    else:

        async def stream_behaviour(request: Any, context: Context) -> AsyncIterator[Any]:
            call = _Call(method, context)
            failure: BaseException | None = None
            try:
                async for item in inner(request, context):
                    yield item
            except BaseException as exc:
                failure = exc
                raise
            finally:
                call.end(failure)

        behaviour = stream_behaviour
    return make(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
