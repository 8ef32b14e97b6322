"""The jobtask Python SDK: `AsyncClient` (asyncio) and `Client` (blocking) over the JobService
and TaskService gRPC stubs. Calls return the services' protobuf messages; failed calls raise
`JobtaskError` subclasses, one per gRPC status code."""

from __future__ import annotations

from jobtask.sdk.client import AsyncClient
from jobtask.sdk.config import DEFAULT_JOBS_ADDR, DEFAULT_TASKS_ADDR, ClientConfig
from jobtask.sdk.errors import (
    ERROR_CLASSES,
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    JobtaskError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
    from_rpc_error,
)
from jobtask.sdk.messages import Submission, to_dict
from jobtask.sdk.sync import Client

__all__ = [
    "DEFAULT_JOBS_ADDR",
    "DEFAULT_TASKS_ADDR",
    "ERROR_CLASSES",
    "AbortedError",
    "AlreadyExistsError",
    "AsyncClient",
    "CancelledError",
    "Client",
    "ClientConfig",
    "DataLossError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "JobtaskError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "Submission",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "from_rpc_error",
    "to_dict",
]
