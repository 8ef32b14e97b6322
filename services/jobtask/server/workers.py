"""The worker registry over gRPC: the Worker message, and the WatchWorkers stream.

WatchWorkers sends the registry, then what changed. A worker's state is derived from the
clock (lost: not seen within the live horizon), so no write marks it lost: the stream
re-reads the registry when the store signals a commit, at most every READ_SECONDS, and at
least every READ_SECONDS so a worker turning lost is noticed, and tells the differences: a
worker new or in another state, one changed, and one gone from the registry (REMOVED, with
the worker as last sent: TaskService's upkeep prunes stopped and lost workers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from jobtask.manager.context import Caller, utcnow
from jobtask.manager.workers import WorkerRegistry, WorkerState, WorkerView
from jobtask.server.changes import ChangeSignal
from jobtask.server.convert import timestamp
from jobtask.v1 import worker_pb2

__all__ = ["WorkerWatch", "worker_pb"]

READ_SECONDS = 1.0
HEARTBEAT_SECONDS = 5.0

_STATE_PB = {
    WorkerState.LIVE: worker_pb2.WORKER_STATE_LIVE,
    WorkerState.LOST: worker_pb2.WORKER_STATE_LOST,
    WorkerState.STOPPED: worker_pb2.WORKER_STATE_STOPPED,
}
_MOVE_PB = {
    WorkerState.LIVE: worker_pb2.WORKER_EVENT_TYPE_JOINED,
    WorkerState.LOST: worker_pb2.WORKER_EVENT_TYPE_LOST,
    WorkerState.STOPPED: worker_pb2.WORKER_EVENT_TYPE_STOPPED,
}


def worker_pb(view: WorkerView) -> worker_pb2.Worker:
    row = view.row
    msg = worker_pb2.Worker(
        kind="arvados#worker",
        worker_id=row.worker_id,
        node_name=row.node_name,
        tags=row.tags,
        slots=row.slots,
        free_slots=view.free_slots,
        ram_kib=row.ram_kib,
        cores=row.cores,
        task_uuids=view.task_uuids,
        state=_STATE_PB[view.state],
        tasks_finished=view.tasks_finished,
        tasks_failed=view.tasks_failed,
    )
    msg.last_seen_at.CopyFrom(timestamp(row.last_seen_at))
    if row.first_seen_at is not None:
        msg.first_seen_at.CopyFrom(timestamp(row.first_seen_at))
    if row.stopped_at is not None:
        msg.stopped_at.CopyFrom(timestamp(row.stopped_at))
    return msg


def _shown(view: WorkerView) -> tuple[Any, ...]:
    """What a CHANGED event is sent for (not last_seen_at: every heartbeat moves it)."""
    row = view.row
    return (
        row.node_name,
        row.tags,
        row.slots,
        row.ram_kib,
        row.cores,
        view.free_slots,
        view.task_uuids,
        view.tasks_finished,
        view.tasks_failed,
    )


def _event(kind: int, view: WorkerView | None = None) -> worker_pb2.WorkerEvent:
    msg = worker_pb2.WorkerEvent(type=kind)  # type: ignore[arg-type]
    msg.time.CopyFrom(timestamp(utcnow()))
    if view is not None:
        msg.worker.CopyFrom(worker_pb(view))
    return msg


class WorkerWatch:
    def __init__(
        self,
        registry: WorkerRegistry,
        signal: ChangeSignal,
        *,
        read_seconds: float = READ_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.registry = registry
        self.signal = signal
        self.read_seconds = read_seconds
        self.heartbeat_seconds = heartbeat_seconds

    async def stream(
        self, caller: Caller, opened: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncGenerator[worker_pb2.WorkerEvent, None]:
        mark = self.signal.mark()
        views = await self.registry.all(caller)
        if opened is not None:
            await opened()
        snapshot = _event(worker_pb2.WORKER_EVENT_TYPE_SNAPSHOT)
        snapshot.workers.extend(worker_pb(v) for v in views)
        yield snapshot
        known = {v.row.worker_id: v for v in views}
        last_read = last_sent = time.monotonic()
        while True:
            await self.signal.wait(self.read_seconds, since=mark)
            # Commits come in bursts: one read per interval at most.
            await asyncio.sleep(max(0.0, last_read + self.read_seconds - time.monotonic()))
            mark = self.signal.mark()
            views = await self.registry.all(caller)
            last_read = time.monotonic()
            for view in views:
                before = known.get(view.row.worker_id)
                if before is None or before.state is not view.state:
                    yield _event(_MOVE_PB[view.state], view)
                elif _shown(before) != _shown(view):
                    yield _event(worker_pb2.WORKER_EVENT_TYPE_CHANGED, view)
                else:
                    continue
                last_sent = time.monotonic()
            now_known = {v.row.worker_id: v for v in views}
            if len(views) >= self.registry.watch_limit:
                # A read cut at the limit (a farm of more workers) shows a window of the
                # registry: one missing from it may merely have moved out of the window.
                known.update(now_known)
            else:
                # Gone between two reads of all of it: pruned (manager.workers.prune_workers).
                for worker_id, before in known.items():
                    if worker_id not in now_known:
                        yield _event(worker_pb2.WORKER_EVENT_TYPE_REMOVED, before)
                        last_sent = time.monotonic()
                known = now_known
            if time.monotonic() - last_sent >= self.heartbeat_seconds:
                yield _event(worker_pb2.WORKER_EVENT_TYPE_HEARTBEAT)
                last_sent = time.monotonic()
