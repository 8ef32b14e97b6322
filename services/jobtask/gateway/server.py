"""The gateway application and its process: create_app, serve_gateway, run_gateway_from_env."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import pkgutil
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import jobtask.v1
import uvicorn
from jobtask.gateway import health
from jobtask.gateway.channels import ServiceChannels
from jobtask.gateway.connections import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    ConnectionLimits,
    guarded_protocol,
    throttle_accept_errors,
)
from jobtask.gateway.dashboard import dashboard_routes
from jobtask.gateway.discovery import discovery_document
from jobtask.gateway.endpoints import JSON_TYPE, Dispatcher, error_response
from jobtask.gateway.errors import ApiError
from jobtask.gateway.middleware import ArvadosHeaders
from jobtask.gateway.openapi import openapi_document
from jobtask.gateway.rendering import dumps
from jobtask.gateway.routing import RouteTable, load_services
from jobtask.sdk.transport import channel_target
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["GatewayServer", "create_app", "run_gateway_from_env", "serve_gateway"]

log = logging.getLogger(__name__)


def service_modules() -> tuple[ModuleType, ...]:
    """Every generated `jobtask.v1.*_pb2` module that defines a service: a new service file
    is served as soon as its stubs are generated."""
    modules = []
    for info in sorted(pkgutil.iter_modules(jobtask.v1.__path__), key=lambda i: i.name):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"jobtask.v1.{info.name}")
            if module.DESCRIPTOR.services_by_name:
                modules.append(module)
    return tuple(modules)


SERVICE_MODULES = service_modules()
# The TaskService process serves TaskService; the JobService process serves the others
# (JobService and the token service).
TASKS_PROCESS_SERVICES = frozenset({"TaskService"})
DEFAULT_LISTEN = "127.0.0.1:8000"
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# The Python SDK caches discovery through httplib2 and honours this.
_DISCOVERY_CACHE = "public, max-age=60"


def create_app(
    jobs_target: str,
    tasks_target: str,
    *,
    cluster_id: str | None = None,
    modules: Sequence[ModuleType] = SERVICE_MODULES,
    services_ca: str | None = None,
) -> Starlette:
    """An ASGI app serving every annotated RPC of `modules` over HTTP. services_ca: a PEM
    file of the CA that signed the services' certificates, when they speak TLS."""
    for target in (jobs_target, tasks_target):
        channel_target(target)  # a bad replica list fails here, at start, not per request
    services = load_services(modules)
    routes = RouteTable(services)
    targets = {
        svc.full_name: tasks_target if svc.name in TASKS_PROCESS_SERVICES else jobs_target
        for svc in services
    }
    tls_ca = Path(services_ca).read_bytes() if services_ca else None
    channels = ServiceChannels(targets, tls_ca=tls_ca)
    dispatcher = Dispatcher(routes, channels)
    cluster = cluster_id or os.environ.get("JOBTASK_CLUSTER_ID") or "zzzzz"
    discovery = discovery_document(routes, cluster_id=cluster)
    openapi = openapi_document(routes)

    async def discovery_endpoint(request: Request) -> Response:
        root = f"{request.url.scheme}://{request.url.netloc}/"
        doc = {**discovery, "rootUrl": root, "baseUrl": root + discovery["servicePath"]}
        return Response(
            dumps(doc), media_type=JSON_TYPE, headers={"Cache-Control": _DISCOVERY_CACHE}
        )

    async def openapi_endpoint(request: Request) -> Response:
        root = f"{request.url.scheme}://{request.url.netloc}"
        doc = {**openapi, "servers": [{"url": root}]}
        return Response(
            dumps(doc), media_type=JSON_TYPE, headers={"Cache-Control": _DISCOVERY_CACHE}
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await channels.close()

    app = Starlette(
        routes=[
            Route(
                "/discovery/v1/apis/arvados/v1/rest",
                discovery_endpoint,
                methods=["GET", "POST"],
            ),
            Route("/openapi.json", openapi_endpoint, methods=["GET"]),
            *dashboard_routes(),
            Route("/{path:path}", dispatcher.handle, methods=_ALL_METHODS),
        ],
        middleware=[Middleware(ArvadosHeaders)],
        exception_handlers={HTTPException: _http_exception},
        lifespan=lifespan,
    )
    health.install(app, targets, tls_ca)  # /healthz, /readyz, access log (issue 18)
    return app


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (a path its router cannot even parse) in Arvados's body."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = "Path not found" if status == 404 else str(getattr(exc, "detail", "Error"))
    return error_response(ApiError(status, [message]), head=request.method == "HEAD")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the embedding process (`jobtask up`) owns those."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class GatewayServer:
    """A running gateway: where it listens and how to stop it."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int
    scheme: str
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout=5)
        except TimeoutError:
            self.server.force_exit = True
            await self.task

    async def wait(self) -> None:
        await asyncio.shield(self.task)


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return (host.strip("[]") or "127.0.0.1"), int(port)


async def serve_gateway(
    listen: str,
    jobs_addr: str,
    tasks_addr: str,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    *,
    services_ca: str | None = None,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> GatewayServer:
    """Starts uvicorn on `listen` (port 0: any free port); HTTPS when both TLS files are given.
    services_ca: the CA (PEM) to verify the services by, when they speak TLS. header_timeout:
    seconds a client has to send a whole request header; idle_timeout: seconds a kept-alive
    connection may sit idle; max_connections: connections held at once (at most half the
    process's descriptor limit), past which new ones are closed at once."""
    host, port = _host_port(listen)
    limits = ConnectionLimits(header_timeout, max_connections)
    throttle_accept_errors()
    app = create_app(jobs_addr, tasks_addr, services_ca=services_ca)
    tls = bool(tls_cert and tls_key)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=tls_cert if tls else None,
        ssl_keyfile=tls_key if tls else None,
        log_config=None,  # the embedding process configures logging
        access_log=False,  # access lines would carry api_token query parameters
        lifespan="on",
        timeout_graceful_shutdown=2,
        http=guarded_protocol(limits),
        timeout_keep_alive=idle_timeout,
    )
    sock = _listening_socket(host, port, listen)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # raises the start-up error (a bad certificate)
            raise OSError(f"gateway stopped while starting on {listen}")
        await asyncio.sleep(0.01)
    return GatewayServer(server, task, _bound_port(server), "https" if tls else "http", host)


def _listening_socket(host: str, port: int, listen: str) -> socket.socket:
    """The gateway's socket, bound here rather than by uvicorn, which answers a port in use
    with a logged traceback and SystemExit instead of an error its embedder can report."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise OSError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    return sock


def _bound_port(server: uvicorn.Server) -> int:
    for srv in server.servers:
        for sock in srv.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
    raise OSError("the gateway has no listening socket")


def connection_options_from_env(
    header_timeout: float | None = None,
    idle_timeout: int | None = None,
    max_connections: int | None = None,
) -> dict[str, Any]:
    """serve_gateway's connection options: the given values, else JOBTASK_GATEWAY_HEADER_TIMEOUT,
    JOBTASK_GATEWAY_IDLE_TIMEOUT and JOBTASK_GATEWAY_MAX_CONNECTIONS, else the defaults."""
    env = os.environ
    return {
        "header_timeout": header_timeout
        or float(env.get("JOBTASK_GATEWAY_HEADER_TIMEOUT") or DEFAULT_HEADER_TIMEOUT),
        "idle_timeout": idle_timeout
        or int(env.get("JOBTASK_GATEWAY_IDLE_TIMEOUT") or DEFAULT_IDLE_TIMEOUT),
        "max_connections": max_connections
        or int(env.get("JOBTASK_GATEWAY_MAX_CONNECTIONS") or DEFAULT_MAX_CONNECTIONS),
    }


async def run_gateway_from_env() -> None:
    """Serves per JOBTASK_* environment variables until cancelled."""
    env = os.environ
    listen = env.get("JOBTASK_GATEWAY_LISTEN") or DEFAULT_LISTEN
    jobs_addr = env.get("JOBTASK_JOBS_ADDR") or "127.0.0.1:50051"
    tasks_addr = env.get("JOBTASK_TASKS_ADDR") or "127.0.0.1:50052"
    handle = await serve_gateway(
        listen,
        jobs_addr,
        tasks_addr,
        env.get("JOBTASK_TLS_CERT") or None,
        env.get("JOBTASK_TLS_KEY") or None,
        services_ca=env.get("JOBTASK_TLS_CA") or None,
        **connection_options_from_env(),
    )
    log.info("gateway listening on %s (jobs %s, tasks %s)", handle.url, jobs_addr, tasks_addr)
    try:
        await handle.wait()
    finally:
        await handle.stop()
