"""Domain errors: what went wrong, in terms a caller can act on.

Each class corresponds to one canonical gRPC status code; the servers translate them at one
seam (jobtask.server.errors), the gateway to HTTP, the SDK to its exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class DomainError(Exception):
    """Base class. `message` is safe to show to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """The request is malformed; `field` names the offending field or parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.description = message


def each_request(field: str, requests: Iterable[T], check: Callable[[T], R]) -> list[R]:
    """check(request) for each of a batch's requests, in order; an InvalidArgument raised
    names its request (`script` becomes `requests[2].job.script` for the field `job`): one
    handler for the batch, not one a request."""
    out: list[R] = []
    i = 0
    try:
        for i, request in enumerate(requests):  # noqa: B007 -- i names the refused one
            out.append(check(request))
    except InvalidArgument as exc:
        raise InvalidArgument(f"requests[{i}].{field}.{exc.field}", exc.description) from None
    return out


class NotFound(DomainError):
    """The object does not exist, or the caller may not read it."""


class AlreadyExists(DomainError):
    """The object (for instance a submit_id) exists already with different content."""


class FailedPrecondition(DomainError):
    """The request is valid but the object's state forbids it (illegal transition, lock)."""


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""


class Unauthenticated(DomainError):
    """No valid credentials."""


class OutOfRange(DomainError):
    """A position (such as a watch stream's after_seq) is outside what is kept."""


class Aborted(DomainError):
    """A concurrent change won; retrying the request may succeed."""


class Unavailable(DomainError):
    """A dependency (the database) is unreachable for now; retry later."""


def shutting_down() -> Unavailable:
    """What the callers waiting on a task shared by several calls (a group's committer, a
    shared read) hear when that task is canceled, which happens only as the server stops:
    their calls fail UNAVAILABLE, which clients retry (here or on another replica), where
    a canceled future would have ended them CANCELLED, as if they had given up."""
    return Unavailable("the server is shutting down; try again")
