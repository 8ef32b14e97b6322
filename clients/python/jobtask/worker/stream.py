"""One task's RunTask conversation, kept across reconnects.

Every message but the opening one is numbered; the server acknowledges the highest number
whose changes are durable. Unacknowledged messages are kept, and sent again after a
reconnect (to the same address, under the same lease), so a server restart loses no log
line or verdict. The opening message of every connection names the task and the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import grpc
from jobtask.sdk.client import AsyncClient
from jobtask.v1 import task_service_pb2
from jobtask.worker.lease import StreamBroken, TaskLease

log = logging.getLogger(__name__)

# The lease is gone (expired, or the task given to another worker): stop at once.
LOST_CODES = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND})

# How long closing a stream waits for the server to end the call (see StreamLease.close).
CLOSE_GRACE_SECONDS = 1.0


class LeaseStream(TaskLease):
    def __init__(
        self,
        client: AsyncClient,
        task_uuid: str,
        lease_id: str,
        ttl: float,
        *,
        on_instruction: Callable[[int, str], None],
        on_news: Callable[[], None],
    ) -> None:
        super().__init__(task_uuid, lease_id, ttl, on_instruction=on_instruction, on_news=on_news)
        self.client = client
        self.broken: str | None = None
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Opens a stream: the opening message, then every unacknowledged one."""
        await self.close()
        self.broken = None
        self._call = self.client.run_task()
        hello = task_service_pb2.RunTaskRequest(task_uuid=self.task_uuid, lease_id=self.lease_id)
        for message in [hello, *self._unacked]:
            await self._write(message)
        self._reader = asyncio.create_task(self._read(self._call))

    async def send(self, message: task_service_pb2.RunTaskRequest) -> None:
        self._number(message)
        await self._write(message)

    async def _write(self, message: task_service_pb2.RunTaskRequest) -> None:
        self.check()
        try:
            await self._call.write(message)
        except grpc.aio.AioRpcError as exc:
            self._failed(exc)
            self.check()
        except asyncio.InvalidStateError:
            # The server ended the stream; the reader knows why.
            await asyncio.sleep(0)
            self.check()
            raise StreamBroken("the server ended the stream") from None

    def check(self) -> None:
        """Raises LeaseLost or StreamBroken if the reader found either."""
        super().check()
        if self.broken is not None:
            raise StreamBroken(self.broken)

    def _failed(self, exc: grpc.aio.AioRpcError) -> None:
        if exc.code() in LOST_CODES:
            self.lost_reason = exc.details() or exc.code().name
        elif self.broken is None:
            self.broken = f"{exc.code().name}: {exc.details()}"
        self.on_news()

    async def _read(self, call: Any) -> None:
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:  # type: ignore[attr-defined]
                    if self.final is None and self.lost_reason is None:
                        self.broken = "the server ended the stream without deciding the task"
                    return
                self.receive(response)
        except grpc.aio.AioRpcError as exc:
            self._failed(exc)
        finally:
            self.on_news()

    async def close(self) -> None:
        call, reader = self._call, self._reader
        self._call = self._reader = None
        if call is not None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await call.done_writing()
            if reader is not None and not reader.done():
                # The server ends the call once it has read the end of ours: waiting for
                # that (briefly) lets the call end OK. Cancelling at once raced it, and a
                # call cancelled before the server's end counted as failed there.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), CLOSE_GRACE_SECONDS)
            call.cancel()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
