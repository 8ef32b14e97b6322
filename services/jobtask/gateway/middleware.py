"""Headers Arvados puts on every response: CORS and X-Request-Id."""

from __future__ import annotations

from jobtask.observability.logs import given_request_id, new_request_id
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CORS_HEADERS", "ArvadosHeaders", "request_id_of"]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, PUT, POST, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "86486400",
}


def request_id_of(headers: Headers) -> str:
    """The client's id if it may be one (given_request_id), else a new one."""
    return given_request_id(headers.get("x-request-id", "")) or new_request_id()


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
