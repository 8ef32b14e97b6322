"""The web dashboard: static files shipped in this package, served at `/` and `/_dashboard/`.

The page talks to the same REST paths as every other caller, with the token the user
typed (kept in the browser's session storage, sent as an Authorization header; never in
a URL). Live parts read the watch streams as Server-Sent Events through fetch().
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

__all__ = ["ASSETS", "dashboard_routes"]

ASSETS = Path(__file__).with_name("static")
# Nothing but this origin's own files and API: no inline script, no third party.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


class _Assets(StaticFiles):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                headers += [(k.lower().encode(), v.encode()) for k, v in _HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)  # type: ignore[arg-type]


async def _index(request: Request) -> Response:
    return FileResponse(ASSETS / "index.html", headers=_HEADERS, media_type="text/html")


def dashboard_routes() -> list[BaseRoute]:
    return [
        Route("/", _index, methods=["GET", "HEAD"]),
        Mount("/_dashboard", app=_Assets(directory=ASSETS), name="dashboard"),
    ]
