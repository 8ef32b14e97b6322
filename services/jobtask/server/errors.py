"""Domain errors → gRPC status, at one seam: every servicer method is wrapped by `rpc`."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from jobtask.domain import errors

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Most specific first: subclasses before their bases (all derive from DomainError).
STATUS_OF: list[tuple[type[errors.DomainError], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (errors.Aborted, grpc.StatusCode.ABORTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
]


def status_code(exc: errors.DomainError) -> grpc.StatusCode:
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.UNKNOWN


def rich_status(exc: errors.DomainError) -> grpc.Status:
    """A google.rpc.Status; bad input carries BadRequest details naming the field."""
    code = status_code(exc)
    status = status_pb2.Status(code=code.value[0], message=exc.message)
    if isinstance(exc, errors.InvalidArgument):
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=exc.field, description=exc.description
                )
            ]
        )
        status.details.add().Pack(detail)
    elif isinstance(exc, errors.Unavailable):
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=1)))
    return rpc_status.to_status(status)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    if isinstance(exc, errors.DomainError):
        # grpc-stubs lacks abort_with_status on the asyncio context; grpc.aio has it.
        await context.abort_with_status(rich_status(exc))  # type: ignore[attr-defined]
    log.exception("unexpected error in %s", context.__class__.__name__)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")


def rpc(fn: F) -> F:
    """Translates domain errors raised by a servicer method (unary or streaming)."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for item in fn(self, request, context):
                    yield item
            except errors.DomainError as exc:
                await _abort(context, exc)

        return cast(F, stream)

    @functools.wraps(fn)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        try:
            return await fn(self, request, context)
        except errors.DomainError as exc:
            await _abort(context, exc)

    return cast(F, unary)
