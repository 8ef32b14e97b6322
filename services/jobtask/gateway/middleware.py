"""Headers Arvados puts on every response: CORS and X-Request-Id."""

from __future__ import annotations

import secrets

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CORS_HEADERS", "ArvadosHeaders", "new_request_id", "request_id_of"]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, PUT, POST, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "86486400",
}
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_request_id() -> str:
    """`req-` + 20 base-36 characters, the form Arvados's clients and servers generate."""
    return "req-" + "".join(secrets.choice(_BASE36) for _ in range(20))


def request_id_of(headers: Headers) -> str:
    """The client's id if it is 1..1024 printable ASCII characters (it goes on to gRPC
    metadata, which allows nothing else), else a new one."""
    given = headers.get("x-request-id", "")
    ok = 1 <= len(given) <= 1024 and all(" " <= ch <= "~" for ch in given)
    return given if ok else new_request_id()


class ArvadosHeaders:
    """Sets `scope["state"]["request_id"]` and adds the headers to whatever the app answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-Id"] = request_id
                for name, value in CORS_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
