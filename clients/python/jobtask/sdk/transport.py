"""The two channels, the stubs over them, and the one place a failed call becomes a typed
exception."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import Message
from jobtask.sdk.config import ClientConfig
from jobtask.sdk.errors import from_rpc_error
from jobtask.v1 import job_service_pb2_grpc, task_service_pb2_grpc

R = TypeVar("R", bound=Message)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CONNECT_TIMEOUT_MS = 5000
_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # After a server restart, reconnect within a second or two, not gRPC's default of up to
    # two minutes: a worker must resume its RunTask streams within one lease ttl.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # Despite its name, gRPC reads this as the least time a connection attempt is given
    # (TCP connect and the HTTP/2 SETTINGS exchange; default 20 s), not as a backoff. At
    # 200 ms a handshake with a busy server timed out ("connection attempt timed out before
    # receiving SETTINGS frame") and the call failed UNAVAILABLE although the server was up.
    # A refused connection (the server down) still fails at once.
    ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
    # A peer that stopped answering (a partition drops packets silently) is noticed by
    # pings, not by a stream that just hangs. The servers permit pings this often.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


def channel_target(addr: str) -> str:
    """The gRPC target for an address: `host:port`, or several replicas' `ip:port,ip:port`.

    A list becomes gRPC's static `ipv4:`/`ipv6:` target under its default `pick_first`
    policy: the channel uses the first address that answers and, when that replica dies,
    moves to the next one that does (calls in flight fail with UNAVAILABLE; the worker's
    claims and RunTask streams retry, under their leases). One DNS name with several
    addresses (a scaled compose service, a headless Kubernetes service) needs no list: gRPC's
    DNS resolver fails over among them the same way.
    """
    parts = [part.strip() for part in addr.split(",") if part.strip()]
    if len(parts) < 2:
        return addr
    families = set()
    for part in parts:
        host = part.rpartition(":")[0].strip("[]")
        try:
            families.add(ipaddress.ip_address(host).version)
        except ValueError:
            raise ValueError(
                f"address list {addr!r}: list IP:port entries of one family "
                f"({part!r} is not), or give one DNS name that resolves to every replica"
            ) from None
    if len(families) > 1:
        raise ValueError(f"address list {addr!r}: mixes IPv4 and IPv6 addresses")
    return f"ipv{families.pop()}:{','.join(parts)}"


def open_channel(addr: str, config: ClientConfig) -> grpc.aio.Channel:
    target = channel_target(addr)
    if config.tls_ca_file:
        credentials = grpc.ssl_channel_credentials(Path(config.tls_ca_file).read_bytes())
        return grpc.aio.secure_channel(target, credentials, options=_OPTIONS)
    return grpc.aio.insecure_channel(target, options=_OPTIONS)


class Transport:
    """Owns the channels: one to JobService, one to TaskService (one when they coincide)."""

    def __init__(self, config: ClientConfig, *, timeout: float | None = None) -> None:
        self.config = config
        self.timeout = timeout
        self.metadata = config.metadata()
        self._jobs_channel = open_channel(config.jobs_addr, config)
        self._tasks_channel = (
            self._jobs_channel
            if config.tasks_addr == config.jobs_addr
            else open_channel(config.tasks_addr, config)
        )
        # The generated stubs are untyped; the typed wrappers are AsyncClient's methods.
        self.jobs: Any = job_service_pb2_grpc.JobServiceStub(  # type: ignore[no-untyped-call]
            self._jobs_channel
        )
        self.tasks: Any = task_service_pb2_grpc.TaskServiceStub(  # type: ignore[no-untyped-call]
            self._tasks_channel
        )

    async def unary(
        self,
        method: Any,
        request: Message,
        response_type: type[R],
        *,
        deadline: float | None = None,
    ) -> R:
        """Calls a unary stub method; gRPC errors come out as JobtaskError subclasses."""
        try:
            response = await method(
                request, metadata=self.metadata, timeout=deadline or self.timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        return cast(R, response)

    async def close(self) -> None:
        await self._jobs_channel.close(None)
        if self._tasks_channel is not self._jobs_channel:
            await self._tasks_channel.close(None)
