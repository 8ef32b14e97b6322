"""The gateway's health endpoints and its HTTP access log and metrics.

`GET /healthz`: the gateway process answers (no auth, no calls). `GET /readyz`: each
service answers gRPC health checks for its services and for `jobtask.store`, a database
round trip made by the service (jobtask.server.readiness); 503 when any does not. Both answer
JSON. `install(app, ...)` adds the routes and the middleware to the gateway's app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jobtask.gateway.channels import request_caller
from jobtask.observability import metrics
from jobtask.observability.logs import ACCESS, request_id
from jobtask.sdk.transport import channel_target
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["STORE_SERVICE", "UNMATCHED", "AccessLog", "install", "route_of"]

STORE_SERVICE = "jobtask.store"
CHECK_TIMEOUT_SECONDS = 3.0
UNMATCHED = "unmatched"
_NO_STORE = {"Cache-Control": "no-store"}


def route_of(scope: Scope) -> str:
    """The metrics and access-log label of a served request, one of a fixed set: the REST
    path template the dispatcher matched (`/arvados/v1/jobs/{uuid}`, left in the request's
    state as `route`), a fixed route's path (`/healthz`), `/_dashboard/{path}` for any
    dashboard file, else `unmatched`. Never the request's own path: ids would each make
    new series."""
    state = scope.get("state") or {}
    if "route" in state:
        return str(state["route"] or UNMATCHED)
    route = scope.get("route")  # Starlette's matched route, once its router ran
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"
    if isinstance(route, Route) and not route.param_convertors:
        return route.path
    return UNMATCHED


class AccessLog:
    """One `jobtask.access` line and the HTTP metrics per request; sets the request id
    (chosen by ArvadosHeaders, which runs outside this) for the request's log lines. The
    line names the caller's user uuid when a service answered a call of the request with
    it (x-jobtask-caller trailing metadata; the gateway verifies no token itself)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id.set(scope.get("state", {}).get("request_id"))
        caller: dict[str, str] = {}
        request_caller.set(caller)  # filled by the request's gRPC calls
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            route = route_of(scope)
            metrics.HTTP_REQUESTS.labels(route, str(status)).inc()
            metrics.HTTP_SECONDS.labels(route).observe(seconds)
            # The path only: a query string may carry api_token.
            ACCESS.info(
                "http",
                extra={
                    "fields": {
                        "method": scope.get("method"),
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 1),
                        **caller,
                    }
                },
            )


async def _check(target: str, services: Sequence[str], tls_ca: bytes | None) -> dict[str, str]:
    """Each service's health at one address: "ok", "not serving" or "unreachable"."""
    address = channel_target(target)
    if tls_ca is None:
        channel = grpc.aio.insecure_channel(address)
    else:
        channel = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(tls_ca))
    out: dict[str, str] = {}
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in services:
            try:
                answer = await stub.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=CHECK_TIMEOUT_SECONDS
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    out[service] = "unreachable"
                # NOT_FOUND: the process answers but publishes no health for this name (the
                # token service rides along with JobService): nothing to report.
                continue
            serving = answer.status == health_pb2.HealthCheckResponse.SERVING
            out[service] = "ok" if serving else "not serving"
    finally:
        await channel.close(None)
    return out


def install(app: Starlette, targets: Mapping[str, str], tls_ca: bytes | None = None) -> None:
    """targets: service full name -> the address the gateway calls it at."""
    by_target: dict[str, list[str]] = {}
    for service, target in sorted(targets.items()):
        by_target.setdefault(target, []).append(service)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"}, headers=_NO_STORE)

    async def readyz(request: Request) -> JSONResponse:
        answers = await asyncio.gather(
            *(_check(t, [*names, STORE_SERVICE], tls_ca) for t, names in by_target.items())
        )
        checks: dict[str, str] = {}
        for (target, names), answer in zip(by_target.items(), answers, strict=True):
            for name in names:
                if name in answer:
                    checks[name] = answer[name]
            # Every service process pings the one database: the worst answer counts.
            store = answer.get(STORE_SERVICE, "unreachable")
            if checks.get("database", "ok") == "ok":
                checks["database"] = store if store == "ok" else f"{store} (via {target})"
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "unready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503, headers=_NO_STORE)

    app.router.routes[:0] = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
    ]
    # Innermost of the app's own middleware: inside ArvadosHeaders, which picks the id.
    app.user_middleware.append(Middleware(AccessLog))
