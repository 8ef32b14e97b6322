"""gRPC status codes → typed exceptions, translated at one seam (`from_rpc_error`).

Every code but OK has its own class, so callers branch with `except NotFoundError:` instead
of comparing codes. Rich details the servers attach (google.rpc.Status in the trailing
metadata) are unpacked where a caller needs them: the offending field of a BadRequest, the
delay of a RetryInfo.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


class JobtaskError(Exception):
    """Base of every error the SDK raises for a failed call."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, status: status_pb2.Status | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The google.rpc.Status the server sent, when it sent one.
        self.status = status

    def __str__(self) -> str:
        return self.message or self.code.name.lower().replace("_", " ")


class CancelledError(JobtaskError):
    code = grpc.StatusCode.CANCELLED


class UnknownError(JobtaskError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgumentError(JobtaskError, ValueError):
    """Bad input, refused by the server or by the SDK before any call; `field` names the
    offending attribute when the server said which, or the SDK's argument. A ValueError too,
    as the SDK's own checks raised before (callers that catch ValueError still do)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self, message: str, *, status: status_pb2.Status | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.field: str | None = field
        self.description: str | None = None
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                if bad.field_violations:
                    self.field = bad.field_violations[0].field
                    self.description = bad.field_violations[0].description
                    break


class DeadlineExceededError(JobtaskError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFoundError(JobtaskError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(JobtaskError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDeniedError(JobtaskError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(JobtaskError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(JobtaskError):
    """The object is not in a state that allows the call (an illegal status move)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(JobtaskError):
    code = grpc.StatusCode.ABORTED


class OutOfRangeError(JobtaskError):
    """For watch streams: `after_seq` is too old; read the job again and watch afresh."""

    code = grpc.StatusCode.OUT_OF_RANGE


class UnimplementedError(JobtaskError):
    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(JobtaskError):
    code = grpc.StatusCode.INTERNAL


class UnavailableError(JobtaskError):
    """The server cannot be reached or is overloaded; the call may be retried."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, *, status: status_pb2.Status | None = None) -> None:
        super().__init__(message, status=status)
        # Seconds the server asked us to wait before retrying, if it said.
        self.retry_after: float | None = None
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                self.retry_after = info.retry_delay.ToTimedelta().total_seconds()


class DataLossError(JobtaskError):
    code = grpc.StatusCode.DATA_LOSS


class UnauthenticatedError(JobtaskError):
    code = grpc.StatusCode.UNAUTHENTICATED


ERROR_CLASSES: dict[grpc.StatusCode, type[JobtaskError]] = {
    cls.code: cls
    for cls in (
        CancelledError,
        UnknownError,
        InvalidArgumentError,
        DeadlineExceededError,
        NotFoundError,
        AlreadyExistsError,
        PermissionDeniedError,
        ResourceExhaustedError,
        FailedPreconditionError,
        AbortedError,
        OutOfRangeError,
        UnimplementedError,
        InternalError,
        UnavailableError,
        DataLossError,
        UnauthenticatedError,
    )
}


def _rich_status(error: grpc.aio.AioRpcError | grpc.Call) -> status_pb2.Status | None:
    try:
        # AioRpcError offers the same code()/details()/trailing_metadata() as grpc.Call.
        return rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:
        # Code or message disagree with the details: trust the plain status.
        return None


def from_rpc_error(error: grpc.RpcError) -> JobtaskError:
    """The typed exception for a failed call (grpc.aio.AioRpcError or a sync grpc.Call)."""
    if not isinstance(error, grpc.aio.AioRpcError | grpc.Call):
        return UnknownError(str(error))
    code = error.code()
    message = error.details() or ""
    cls = ERROR_CLASSES.get(code, UnknownError)
    return cls(message, status=_rich_status(error))
