"""The gRPC → HTTP table covers every status code; no permanent error is a 5xx."""

from __future__ import annotations

import re

import grpc
from jobtask.gateway.errors import HTTP_STATUS, error_body, error_token


def test_every_grpc_status_code_is_mapped() -> None:
    for code in grpc.StatusCode:
        assert code in HTTP_STATUS, code
        assert 200 <= HTTP_STATUS[code] < 600


def test_arvados_flavoured_statuses() -> None:
    assert HTTP_STATUS[grpc.StatusCode.UNAUTHENTICATED] == 401
    assert HTTP_STATUS[grpc.StatusCode.PERMISSION_DENIED] == 403
    assert HTTP_STATUS[grpc.StatusCode.NOT_FOUND] == 404
    assert HTTP_STATUS[grpc.StatusCode.RESOURCE_EXHAUSTED] == 429
    assert HTTP_STATUS[grpc.StatusCode.CANCELLED] == 499
    assert HTTP_STATUS[grpc.StatusCode.DEADLINE_EXCEEDED] == 504
    assert HTTP_STATUS[grpc.StatusCode.UNIMPLEMENTED] == 501
    assert HTTP_STATUS[grpc.StatusCode.UNAVAILABLE] == 503
    for code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS):
        assert HTTP_STATUS[code] == 500


def test_what_the_caller_got_wrong_is_422_never_5xx() -> None:
    """The Arvados SDK retries 5xx about ten times: permanent errors must not be 5xx."""
    for code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.ABORTED,
    ):
        assert HTTP_STATUS[code] == 422


def test_error_body() -> None:
    body = error_body(["bad"])
    assert body["errors"] == ["bad"]
    assert re.fullmatch(r"\d{10}\+[0-9a-f]{8}", str(body["error_token"]))
    assert error_token() != error_token()
