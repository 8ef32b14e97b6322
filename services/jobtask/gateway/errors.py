"""gRPC status → Arvados HTTP error: the one seam where the services' errors become HTTP.

Arvados answers everything the caller got wrong with 422, and its Python SDK retries every
5xx about ten times, so a permanent error must never be a 5xx. The table covers every
grpc.StatusCode (a test iterates the enum).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "HTTP_STATUS",
    "ApiError",
    "error_body",
    "error_token",
    "from_rpc_error",
]

log = logging.getLogger(__name__)

# How jobtask.server.errors names an unexpected failure in its INTERNAL answers.
_ERROR_ID = re.compile(r"\(error id ([0-9a-f]{1,32})\)")

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 422,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 422,
    grpc.StatusCode.ABORTED: 422,
    grpc.StatusCode.OUT_OF_RANGE: 422,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# What Arvados says when the service gave no message of its own.
_DEFAULT_MESSAGES = {
    404: "Path not found",
    401: "Not logged in",
    403: "Forbidden",
}


class ApiError(Exception):
    """An error to answer with Arvados's error body."""

    def __init__(
        self,
        status: int,
        errors: Sequence[str],
        *,
        headers: dict[str, str] | None = None,
        error_token: str | None = None,
    ) -> None:
        super().__init__("; ".join(errors))
        self.status = status
        self.errors = list(errors) or [_DEFAULT_MESSAGES.get(status, "Error")]
        self.headers = dict(headers or {})
        self.error_token = error_token  # set when the error was logged under it

    @classmethod
    def unprocessable(cls, message: str) -> ApiError:
        return cls(422, [message])


def error_token() -> str:
    """`<unix time>+<8 hex>`: what a caller quotes so the error can be found in the logs."""
    return f"{int(time.time())}+{secrets.token_hex(4)}"


def error_body(errors: Sequence[str], token: str | None = None) -> dict[str, object]:
    return {"errors": list(errors), "error_token": token or error_token()}


def from_rpc_error(err: grpc.aio.AioRpcError) -> ApiError:
    """The ApiError for a failed call: status from the table, messages from the status."""
    code = err.code()
    status = HTTP_STATUS.get(code, 500)
    details = err.details() or ""
    messages = [details] if details else []
    for violation in _field_violations(err):
        text = f"{violation.field}: {violation.description}"
        if not any(text in m or violation.description in m for m in messages):
            messages.append(text)
    if status >= 500 and code != grpc.StatusCode.UNAVAILABLE:
        # Internal detail may be anything; the services already log it. Say only what
        # happened, and the error id the service logged it under.
        log.warning("service call failed: %s %s", code.name, details[:200])
        found = _ERROR_ID.search(details)
        messages = [
            f"Internal error ({code.name.lower()}"
            + (f", error id {found.group(1)})" if found else ")")
        ]
    if not messages:
        messages = [_DEFAULT_MESSAGES.get(status, code.name.lower().replace("_", " "))]
    headers = {"Retry-After": "1"} if code == grpc.StatusCode.UNAVAILABLE else {}
    return ApiError(status, messages, headers=headers)


def _field_violations(
    err: grpc.aio.AioRpcError,
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The google.rpc.BadRequest details the services attach to INVALID_ARGUMENT."""
    # grpc.aio.Metadata iterates as (key, value) pairs, whatever the stubs say.
    metadata: Any = err.trailing_metadata() or ()
    raw = next((v for k, v in metadata if k == "grpc-status-details-bin"), None)
    if not isinstance(raw, bytes):
        return []
    status = status_pb2.Status()
    try:
        status.ParseFromString(raw)
    except Exception:  # a malformed detail must not hide the error itself
        return []
    out: list[error_details_pb2.BadRequest.FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend(bad.field_violations)
    return out
