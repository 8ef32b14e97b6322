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
import time
from collections.abc import Callable
from typing import Any

import grpc
from jobtask.sdk.client import AsyncClient
from jobtask.v1 import job_task_pb2, task_service_pb2

log = logging.getLogger(__name__)

# The lease is gone (expired, or the task given to another worker): stop at once.
LOST_CODES = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND})
Instruction = task_service_pb2.Instruction


class StreamBroken(Exception):
    """The connection failed; reconnecting may help."""


class LeaseLost(Exception):
    """The server no longer holds our lease: the task is not ours any more."""


class LeaseStream:
    def __init__(
        self,
        client: AsyncClient,
        task_uuid: str,
        lease_id: str,
        ttl: float,
        *,
        on_instruction: Callable[[int, str], None],
        poke: asyncio.Event,
    ) -> None:
        self.client = client
        self.task_uuid = task_uuid
        self.lease_id = lease_id
        self.ttl = ttl
        self.on_instruction = on_instruction
        # Set whenever something arrives, so the sender's loop looks again at once.
        self.poke = poke
        # When the server last renewed the lease (the claim granted it just now).
        self.renewed_at = time.monotonic()
        self.final: job_task_pb2.JobTask | None = None
        self.lost_reason: str | None = None
        self.broken: str | None = None
        self._seq = 0
        self._unacked: list[task_service_pb2.RunTaskRequest] = []
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
        self._seq += 1
        message.seq = self._seq
        self._unacked.append(message)
        await self._write(message)

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    async def _write(self, message: task_service_pb2.RunTaskRequest) -> None:
        self._raise_if_over()
        try:
            await self._call.write(message)
        except grpc.aio.AioRpcError as exc:
            self._failed(exc)
            self._raise_if_over()
        except asyncio.InvalidStateError:
            # The server ended the stream; the reader knows why.
            await asyncio.sleep(0)
            self._raise_if_over()
            raise StreamBroken("the server ended the stream") from None

    def _raise_if_over(self) -> None:
        if self.lost_reason is not None:
            raise LeaseLost(self.lost_reason)
        if self.broken is not None:
            raise StreamBroken(self.broken)

    def check(self) -> None:
        """Raises LeaseLost or StreamBroken if the reader found either."""
        self._raise_if_over()

    def _failed(self, exc: grpc.aio.AioRpcError) -> None:
        if exc.code() in LOST_CODES:
            self.lost_reason = exc.details() or exc.code().name
        elif self.broken is None:
            self.broken = f"{exc.code().name}: {exc.details()}"
        self.poke.set()

    async def _read(self, call: Any) -> None:
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:  # type: ignore[attr-defined]
                    if self.final is None and self.lost_reason is None:
                        self.broken = "the server ended the stream without deciding the task"
                    return
                self._receive(response)
        except grpc.aio.AioRpcError as exc:
            self._failed(exc)
        finally:
            self.poke.set()

    def _receive(self, response: task_service_pb2.RunTaskResponse) -> None:
        self.renewed_at = time.monotonic()
        acked = response.acked_seq
        if acked:
            self._unacked = [m for m in self._unacked if m.seq > acked]
        if response.HasField("lease") and response.lease.HasField("ttl"):
            ttl = response.lease.ttl.ToTimedelta().total_seconds()
            if ttl > 0:
                self.ttl = ttl
        if response.HasField("task"):
            # The exit was applied: the closing STOP only says the lease is over.
            self.final = response.task
            self.poke.set()
            return
        instruction = response.instruction
        if instruction == Instruction.INSTRUCTION_STOP:
            self.lost_reason = response.reason or "the lease was lost"
        if instruction in (Instruction.INSTRUCTION_CANCEL, Instruction.INSTRUCTION_STOP):
            self.on_instruction(instruction, response.reason)
        self.poke.set()

    async def wait_final(self, within: float) -> job_task_pb2.JobTask | None:
        """After the exit was sent: the task as the server decided it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self.final is None:
            self._raise_if_over()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StreamBroken("no answer to the exit report")
            self.poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.poke.wait(), remaining)
        return self.final

    async def close(self) -> None:
        call, reader = self._call, self._reader
        self._call = self._reader = None
        if call is not None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await call.done_writing()
            call.cancel()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
