"""Who is calling: the credentials the auth interceptor (jobtask.server.auth) verified.

The interceptor authenticates every call of the jobtask services before the servicer runs
and binds the result to the call's context (a contextvar: grpc.aio runs each call in its own
task, so a binding never leaks into another call). Servicers ask `CallerResolver` for the
Caller, as before; without a binding -- a server built without the interceptor -- every call
is refused, never served as somebody.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import grpc
from jobtask.domain.errors import Unauthenticated
from jobtask.manager.context import Caller, Settings
from jobtask.manager.tokens import Credentials
from jobtask.observability.logs import CALLER_KEY
from jobtask.store.database import Database

__all__ = [
    "CallerResolver",
    "bearer_token",
    "bind_credentials",
    "current_credentials",
    "send_caller_headers",
]

NOT_LOGGED_IN = "Not logged in"

_credentials: ContextVar[Credentials | None] = ContextVar("jobtask_credentials", default=None)


def bearer_token(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The token of `authorization: Bearer <t>` (or Arvados's `OAuth2 <t>`) metadata."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() in ("bearer", "oauth2") and token.strip():
                return token.strip()
    return None


def send_caller_headers(context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    """A stream's headers, naming its caller: unary answers carry it in their trailers
    (jobtask.server.auth), which a stream the gateway cancels never delivers, so the
    gateway's access line for an SSE watch reads it here."""
    return context.send_initial_metadata(((CALLER_KEY, current_credentials().caller.user_uuid),))


def bind_credentials(creds: Credentials) -> None:
    _credentials.set(creds)


def current_credentials() -> Credentials:
    creds = _credentials.get()
    if creds is None:
        raise Unauthenticated(NOT_LOGGED_IN)
    return creds


class CallerResolver:
    """`await resolver(context)` is the Caller of the current call."""

    def __init__(self, db: Database | None = None, settings: Settings | None = None) -> None:
        # Kept for the servicers' existing constructor calls; the interceptor does the work.
        self.db = db
        self.settings = settings

    async def __call__(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        return current_credentials().caller
