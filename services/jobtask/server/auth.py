"""Authentication and scope checks for every call of the jobtask services: one interceptor.

Each RPC is checked against the HTTP bindings its `google.api.http` annotation declares, with
the path variables filled in from the request (CancelJob{uuid: U} is `POST
/arvados/v1/jobs/U/cancel`), so a token's scopes mean the same through gRPC as through the
REST gateway, which forwards the caller's token. An RPC is allowed when any of its bindings
is: the PATCH binding of UpdateJob/UpdateTask counts as well as the primary PUT, because the
gateway calls the same RPC for a REST PUT and a REST PATCH and the service cannot tell which
the caller sent. A jobtask RPC without an annotation is allowed only to `["all"]` tokens.

No token, or one that is malformed, unknown, expired or revoked: UNAUTHENTICATED "Not logged
in". A streaming call (WatchJob, WatchTasks, RunTask, WorkerSession) re-checks its token every
JOBTASK_STREAM_RECHECK_SECONDS (10) and ends the same way once it is revoked or expired. A
scope miss: PERMISSION_DENIED "Forbidden". Neither message, nor any log line, contains the
token. Services outside the jobtask package (health, reflection) are not intercepted.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import grpc
from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from jobtask.domain import scopes as scope_rules
from jobtask.domain.errors import DomainError, InvalidArgument
from jobtask.manager.tokens import Credentials, TokenManager
from jobtask.observability.logs import CALLER_KEY, refused_token
from jobtask.observability.metrics import TOKENS_REFUSED
from jobtask.server.callers import NOT_LOGGED_IN, bearer_token, bind_credentials
from jobtask.server.errors import rich_status

__all__ = [
    "DEFAULT_RECHECK_SECONDS",
    "FORBIDDEN",
    "AuthInterceptor",
    "HttpBinding",
    "MethodRule",
    "method_rules",
]

log = logging.getLogger(__name__)

FORBIDDEN = "Forbidden"
PROTECTED_PREFIX = "/jobtask."
_VERBS = ("get", "put", "post", "delete", "patch")
_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")
DEFAULT_RECHECK_SECONDS = 10.0

Context = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:  # grpc-stubs makes these generic; grpc's runtime classes are not
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor


@dataclass(frozen=True)
class HttpBinding:
    """One HTTP binding of an RPC: `POST /arvados/v1/jobs/{uuid}/cancel`."""

    method: str
    template: str

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(m.group(1) for m in _VARIABLE.finditer(self.template))

    def path(self, request: Message | None) -> str:
        """The template with each variable replaced by the request's (escaped) value."""

        def fill(found: re.Match[str]) -> str:
            value = _field_value(request, found.group(1))
            # One-segment variables must not smuggle a '/' into the path the scopes see.
            multi = "**" in (found.group(2) or "")
            return quote(value, safe="/" if multi else "")

        return _VARIABLE.sub(fill, self.template)


def _field_value(message: Message | None, dotted: str) -> str:
    value: Any = message
    for name in dotted.split("."):
        if value is None:
            return ""
        value = getattr(value, name, None)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class MethodRule:
    """What a call of one RPC must be allowed to do, as HTTP requests."""

    full_method: str  # "/jobtask.v1.JobService/CancelJob"
    bindings: tuple[HttpBinding, ...]

    def requests(self, request: Message | None) -> list[tuple[str, str]]:
        return [(b.method, b.path(request)) for b in self.bindings]

    def allows(self, scopes: Iterable[str], request: Message | None) -> bool:
        scopes = tuple(scopes)
        if scope_rules.ALL in scopes:
            return True
        return scope_rules.scopes_allow_any(scopes, self.requests(request))


def _rule_bindings(rule: http_pb2.HttpRule) -> list[HttpBinding]:
    out: list[HttpBinding] = []
    pattern = rule.WhichOneof("pattern")
    if pattern in _VERBS:
        out.append(HttpBinding(pattern.upper(), getattr(rule, pattern)))
    elif pattern == "custom":
        out.append(HttpBinding(rule.custom.kind.upper(), rule.custom.path))
    for extra in rule.additional_bindings:
        out.extend(_rule_bindings(extra))
    return out


def _method_rule(method: MethodDescriptor) -> MethodRule:
    full = f"/{method.containing_service.full_name}/{method.name}"
    options = method.GetOptions()
    bindings: tuple[HttpBinding, ...] = ()
    if options.HasExtension(annotations_pb2.http):
        bindings = tuple(_rule_bindings(options.Extensions[annotations_pb2.http]))
    if method.client_streaming and any(b.variables for b in bindings):
        # The request is a stream, unread when the call is admitted: no values to fill in.
        raise ValueError(f"{full}: a client-streaming RPC cannot have path variables")
    return MethodRule(full, bindings)


def method_rules(
    sources: Iterable[ModuleType | ServiceDescriptor],
) -> dict[str, MethodRule]:
    """The rule of every RPC of the given services (or generated `*_pb2` modules)."""
    rules: dict[str, MethodRule] = {}
    for source in sources:
        services = (
            [source]
            if isinstance(source, ServiceDescriptor)
            else list(source.DESCRIPTOR.services_by_name.values())
        )
        for service in services:
            for method in service.methods:
                rule = _method_rule(method)
                rules[rule.full_method] = rule
    return rules


class AuthInterceptor(_Interceptor):
    """Admits a call of a jobtask RPC only with a valid token whose scopes allow it."""

    def __init__(
        self,
        tokens: TokenManager,
        rules: Mapping[str, MethodRule],
        recheck_seconds: float | None = None,
    ) -> None:
        self.tokens = tokens
        self.rules = dict(rules)
        self._wrapped: dict[str, Handler] = {}
        self._recheck_seconds = recheck_seconds

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(PROTECTED_PREFIX):
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            rule = self.rules.get(method) or MethodRule(method, ())
            wrapped = self._wrapped[method] = _wrap(
                handler, self._admitter(rule), self._rechecker(rule)
            )
        return wrapped

    def recheck_seconds(self) -> float:
        """How often a stream re-checks its token: as constructed, else
        $JOBTASK_STREAM_RECHECK_SECONDS (read when a stream opens), else 10 s."""
        if self._recheck_seconds is not None:
            return self._recheck_seconds
        try:
            value = float(os.environ.get("JOBTASK_STREAM_RECHECK_SECONDS") or "nan")
        except ValueError:
            value = float("nan")
        return value if value > 0 else DEFAULT_RECHECK_SECONDS

    def _rechecker(self, rule: MethodRule) -> Recheck:
        async def still_valid(context: Context) -> bool:
            raw = bearer_token(context)
            try:
                return raw is not None and await self.tokens.authenticate(raw) is not None
            except DomainError:  # the store is unreachable: check again next time
                return True

        def start(context: Context) -> _StreamGuard:
            return _StreamGuard(rule.full_method, context, still_valid, self.recheck_seconds())

        return start

    def _admitter(self, rule: MethodRule) -> Callable[[Message | None, Context], Awaitable[None]]:
        async def admit(request: Message | None, context: Context) -> None:
            creds = await self._authenticate(rule, context)
            # Who called, for the gateway's access line; kept by every way the call ends.
            # Added to the trailers set so far (the access interceptor's request id).
            kept = tuple(context.trailing_metadata() or ())
            context.set_trailing_metadata((*kept, (CALLER_KEY, creds.caller.user_uuid)))
            if not rule.allows(creds.scopes, request):
                log.info("%s: scope miss for %s", rule.full_method, creds.caller.user_uuid)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, FORBIDDEN)
            bind_credentials(creds)

        return admit

    async def _authenticate(self, rule: MethodRule, context: Context) -> Credentials:
        raw = bearer_token(context)
        creds: Credentials | None = None
        if raw:
            try:
                creds = await self.tokens.authenticate(raw)
            except DomainError as exc:  # the database is unreachable, say
                # grpc-stubs lacks abort_with_status on the asyncio context; grpc.aio has it.
                await context.abort_with_status(rich_status(exc))  # type: ignore[attr-defined]
        if creds is None:
            # Never the token itself: it may be a real one sent to the wrong cluster. One
            # line per token per five minutes, not one per retry of a misconfigured worker.
            TOKENS_REFUSED.inc()
            refused_token(rule.full_method, raw)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, NOT_LOGGED_IN)
        return creds


Admit = Callable[[Message | None, Context], Awaitable[None]]


class _StreamGuard:
    """Re-checks a streaming call's token every `interval` seconds; once it no longer
    authenticates (revoked, expired), the call ends with UNAUTHENTICATED. A check that
    finds the token gone while the servicer waits (for an event, a worker's message)
    cancels that wait; otherwise the stream ends before its next message."""

    def __init__(
        self,
        method: str,
        context: Context,
        still_valid: Callable[[Context], Awaitable[bool]],
        interval: float,
    ) -> None:
        self.method = method
        self.context = context
        self.task = asyncio.current_task()
        self.revoked = False
        self.waiting = False
        self.checker = asyncio.create_task(self._check(still_valid, interval))

    async def _check(self, still_valid: Callable[[Context], Awaitable[bool]], every: float) -> None:
        while True:
            await asyncio.sleep(every)
            if not await still_valid(self.context):
                break
        self.revoked = True
        if self.waiting and self.task is not None:
            self.task.cancel()

    def is_revoked(self) -> bool:
        return self.revoked

    async def _end(self) -> None:
        log.info("%s: the stream's token is no longer valid; ending it", self.method)
        await self.context.abort(grpc.StatusCode.UNAUTHENTICATED, NOT_LOGGED_IN)

    async def relay(self, responses: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            while not self.revoked:
                self.waiting = True
                try:
                    item = await anext(responses)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    # Not a narrowed `self.revoked`: the re-check task sets it meanwhile.
                    if not self.is_revoked() or self.task is None:
                        raise
                    self.task.uncancel()
                    break
                finally:
                    self.waiting = False
                yield item
            aclose = getattr(responses, "aclose", None)
            if aclose is not None:
                await aclose()  # the servicer's own ending (RunTask: the attempt's)
            await self._end()
        finally:
            self.checker.cancel()


Recheck = Callable[[Context], _StreamGuard]


def _wrap(handler: Handler, admit: Admit, recheck: Recheck) -> Handler:
    """The same handler, admitting each call first. Each kind keeps its calling convention:
    grpc.aio tells coroutine handlers from async-generator ones by inspecting them."""
    kinds: dict[tuple[bool, bool], tuple[Any, Callable[..., Handler]]] = {
        (False, False): (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        (False, True): (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (True, False): (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (True, True): (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    }
    streaming_request = bool(handler.request_streaming)
    inner, make = kinds[(streaming_request, bool(handler.response_streaming))]

    def first(request: Any) -> Message | None:
        return None if streaming_request else request

    async def checked(request: Any, context: Context) -> Any:
        """The request once admitted; a client stream's undecodable messages are refused
        when the servicer reaches them (its error seam answers INVALID_ARGUMENT)."""
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        await admit(first(request), context)
        return _decoded(request) if streaming_request else request

    behaviour: Callable[..., Any]
    if inspect.iscoroutinefunction(inner) or not handler.response_streaming:

        async def unary_behaviour(request: Any, context: Context) -> Any:
            return await inner(await checked(request, context), context)

        behaviour = unary_behaviour
    else:

        async def stream_behaviour(request: Any, context: Context) -> AsyncIterator[Any]:
            responses = inner(await checked(request, context), context)
            if hasattr(responses, "__aiter__"):
                async for item in recheck(context).relay(aiter(responses)):
                    yield item
            else:
                for item in responses:
                    yield item

        behaviour = stream_behaviour
    return make(
        behaviour,
        request_deserializer=_lenient(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


@dataclass(frozen=True)
class _Undecodable:
    """Stands for a request message protobuf could not parse (nested past its depth limit,
    or not protobuf at all): grpc.aio would answer UNKNOWN with the parser's text."""

    message: str = "request: the message could not be decoded (malformed or nested too deep)"


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None
    parse = deserialize

    def lenient(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError:
            return _Undecodable()

    return lenient


async def _decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise InvalidArgument("request", "a message could not be decoded")
        yield request
