"""The Prometheus endpoint: `GET /metrics` on its own listener (--metrics-listen), apart
from the gateway's public port. A plain asyncio server: scrapes are rare and small, and the
store gauges are read in this event loop, where the database lives."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from jobtask.observability.collector import StoreCollector
from jobtask.observability.metrics import COUNTED_BY, counted_by
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)

__all__ = ["PARTS", "MetricsServer", "listen_address", "serve_metrics"]

log = logging.getLogger(__name__)

_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_MAX_HEAD = 16 * 1024
_READ_SECONDS = 10.0
PARTS = tuple(COUNTED_BY)


def listen_address(given: str | None) -> tuple[str, int] | None:
    """`host:port` (port 0: any free port) or None when metrics are off."""
    if not given:
        return None
    host, sep, port = given.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics listen address must be host:port, not {given!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


@dataclass
class MetricsServer:
    server: asyncio.Server
    host: str
    port: int

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/metrics"

    async def stop(self) -> None:
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)


async def serve_metrics(
    listen: str, store: Iterable[StoreCollector] = (), parts: Iterable[str] = PARTS
) -> MetricsServer:
    """Serves the metrics of the parts this process runs (jobs, tasks, gateway) and of the
    process itself, plus the store gauges of `store` (one per process: all parts of
    `jobtask up` share one store)."""
    address = listen_address(listen)
    if address is None:
        raise ValueError("no metrics listen address")
    collectors = list(store)
    registry = CollectorRegistry(auto_describe=False)
    for collector in (
        PROCESS_COLLECTOR,
        PLATFORM_COLLECTOR,
        GC_COLLECTOR,
        *counted_by(parts),
        *collectors,
    ):
        registry.register(collector)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_SECONDS)
            parts = head[:_MAX_HEAD].split(b"\r\n", 1)[0].split()
            if (
                len(parts) >= 2
                and parts[0] in (b"GET", b"HEAD")
                and parts[1]
                in (
                    b"/metrics",
                    b"/",
                )
            ):
                for collector in collectors:
                    await collector.refresh()
                body = generate_latest(registry)
                status, content_type = b"200 OK", _CONTENT_TYPE
            else:
                body, status, content_type = (
                    b"not found; try /metrics\n",
                    b"404 Not Found",
                    (b"text/plain"),
                )
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: "
                + content_type
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + (b"" if parts and parts[0] == b"HEAD" else body)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    host, port = address
    server = await asyncio.start_server(handle, host, port, limit=_MAX_HEAD)
    bound = int(server.sockets[0].getsockname()[1])
    return MetricsServer(server, host, bound)
