"""Domain errors → gRPC status, at one seam: every servicer method is wrapped by `rpc`."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import secrets
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


# grpc-message and grpc-status-details-bin travel as metadata, which peers cap (16 KiB by
# default): a message quoting a caller's 10,000-character value must not break the answer.
MAX_MESSAGE = 1000
INTERNAL_MESSAGE = "internal error (error id {}); see the server log"


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def error_id() -> str:
    """What a caller quotes so the failure can be found in the server's log."""
    return secrets.token_hex(8)


def rich_status(exc: errors.DomainError) -> grpc.Status:
    """A google.rpc.Status; bad input carries BadRequest details naming the field."""
    code = status_code(exc)
    status = status_pb2.Status(code=code.value[0], message=_short(exc.message))
    if isinstance(exc, errors.InvalidArgument):
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_short(exc.field), description=_short(exc.description)
                )
            ]
        )
        status.details.add().Pack(detail)
    elif isinstance(exc, errors.Unavailable):
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=1)))
    return rpc_status.to_status(status)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], name: str, exc: Exception) -> None:
    if isinstance(exc, errors.DomainError):
        # abort_with_status would drop the trailing metadata set so far (the caller's uuid).
        status = rich_status(exc)
        kept = tuple(context.trailing_metadata() or ())
        await context.abort(status.code, status.details, (*kept, *status.trailing_metadata))
    # Anything else is a bug or a failure nobody translated: its text stays in the log.
    found = error_id()
    log.error("unexpected error in %s (error id %s)", name, found, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE.format(found))


INTERRUPTED = "the server interrupted this call; try again"


def cancel_not_asked_for() -> bool:
    """Whether a CancelledError the running task caught is one it was not asked for: a
    future it awaited, canceled by another task. (A call's own cancel -- the client gone, its
    deadline passed, the server stopping -- cancels the handler's task; a worker session's
    ending cancels its loops' tasks.)"""
    task = asyncio.current_task()
    return task is not None and not task.cancelling()


async def _interrupted(context: grpc.aio.ServicerContext[Any, Any], name: str) -> None:
    """Ends a call whose handler was interrupted by a CancelledError it did not ask for:
    left to grpc.aio, which takes it for the call's own cancel, the call would never be
    answered (its client waiting until its deadline, a stream forever). UNAVAILABLE: the
    call may be retried."""
    log.warning("%s was interrupted by a canceled task it waited on; answering UNAVAILABLE", name)
    await _abort(context, name, errors.Unavailable(INTERRUPTED))


def rpc(fn: F) -> F:
    """Translates every exception a servicer method (unary or streaming) raises: domain
    errors to their status, anything else to INTERNAL with an error id and no text, a
    CancelledError the call did not ask for to UNAVAILABLE."""
    name = fn.__qualname__
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for item in fn(self, request, context):
                    yield item
            except _PASS_THROUGH:
                raise
            except asyncio.CancelledError:
                if not cancel_not_asked_for():
                    raise
                await _interrupted(context, name)
            except Exception as exc:
                await _abort(context, name, exc)

        return cast(F, stream)

    @functools.wraps(fn)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        try:
            return await fn(self, request, context)
        except _PASS_THROUGH:
            raise
        except asyncio.CancelledError:
            if not cancel_not_asked_for():
                raise
            await _interrupted(context, name)
        except Exception as exc:
            await _abort(context, name, exc)

    return cast(F, unary)


# context.abort() raises AbortError to end the call with the status it has set already.
_PASS_THROUGH: tuple[type[BaseException], ...] = (grpc.aio.AbortError,)
