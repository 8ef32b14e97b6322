"""gRPC channels to the services, and generic calls by method descriptor.

The gateway has no stubs of its own: any annotated method is called through
`unary_unary`/`unary_stream` with the serializers of its descriptor's message classes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from jobtask.observability.logs import CALLER_KEY
from jobtask.sdk.transport import channel_target

__all__ = ["ServiceChannels", "note_caller", "request_caller"]

Metadata = Sequence[tuple[str, str]]

# Long-polling methods (ClaimTask's `wait`) may hold a call open; watch streams have no deadline.
_UNARY_TIMEOUT = 300.0
_MAX_CALLER = 64

# The HTTP request's caller as the services named it (their CALLER_KEY trailing metadata):
# the access log sets an empty holder per request, each unary call of the request fills it.
request_caller: ContextVar[dict[str, str] | None] = ContextVar("jobtask_gw_caller", default=None)


def note_caller(metadata: Any) -> None:
    holder = request_caller.get()
    if holder is None:
        return
    for key, value in metadata or ():
        if (
            key == CALLER_KEY
            and isinstance(value, str)
            and 1 <= len(value) <= _MAX_CALLER
            and value.isprintable()
        ):
            holder["caller_uuid"] = value


class ServiceChannels:
    """One channel per distinct target, created on first use inside the running event loop."""

    def __init__(self, targets: Mapping[str, str], *, tls_ca: bytes | None = None) -> None:
        # service full name -> "host:port"
        self._targets = dict(targets)
        # PEM roots to verify the services' TLS certificates by; None: cleartext.
        self._tls_ca = tls_ca
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def target_of(self, method: MethodDescriptor) -> str:
        return self._targets[method.containing_service.full_name]

    def _channel(self, method: MethodDescriptor) -> grpc.aio.Channel:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # grpc.aio channels belong to the loop that made them (tests run one loop each).
            self._channels = {}
            self._loop = loop
        addr = self.target_of(method)
        channel = self._channels.get(addr)
        if channel is None:
            # The SDK's reading of an address: one host:port, or a failover list of replicas.
            target = channel_target(addr)
            if self._tls_ca is None:
                channel = grpc.aio.insecure_channel(target)
            else:
                credentials = grpc.ssl_channel_credentials(self._tls_ca)
                channel = grpc.aio.secure_channel(target, credentials)
            self._channels[addr] = channel
        return channel

    def _parts(self, method: MethodDescriptor) -> tuple[str, Any, Any]:
        path = f"/{method.containing_service.full_name}/{method.name}"
        request_cls = GetMessageClass(method.input_type)
        response_cls = GetMessageClass(method.output_type)
        return path, request_cls.SerializeToString, response_cls.FromString

    async def unary(self, method: MethodDescriptor, request: Message, metadata: Metadata) -> Any:
        path, serialize, deserialize = self._parts(method)
        call = self._channel(method).unary_unary(
            path, request_serializer=serialize, response_deserializer=deserialize
        )
        pending = call(request, metadata=tuple(metadata), timeout=_UNARY_TIMEOUT)
        try:
            response = await pending
        except grpc.aio.AioRpcError as err:
            note_caller(err.trailing_metadata())
            raise
        note_caller(await pending.trailing_metadata())
        return response

    def stream(
        self, method: MethodDescriptor, request: Message, metadata: Metadata
    ) -> grpc.aio.UnaryStreamCall[Any, Any]:
        path, serialize, deserialize = self._parts(method)
        call = self._channel(method).unary_stream(
            path, request_serializer=serialize, response_deserializer=deserialize
        )
        return call(request, metadata=tuple(metadata))

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(None)
