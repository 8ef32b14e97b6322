"""A worker's side of the protocol, written plainly so tests read as the scenario."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from jobtask.v1 import task_service_pb2, watch_pb2
from sqlalchemy import func, select

from tests.core.helpers import create_job, task, token_md, worker
from tests.polling import DEADLINE

TSP = task_service_pb2


async def claim_as(
    cluster: Any, worker_id: str, node: str = "node1", ram_kib: int = 0, wait: float = 0.0
) -> TSP.TaskAssignment | None:
    request = TSP.ClaimTaskRequest(worker=worker(worker_id, node, ram_kib=ram_kib))
    if wait:
        request.wait.CopyFrom(Duration(nanos=int(wait * 1e9) % 1_000_000_000, seconds=int(wait)))
    response = await cluster.tasks.ClaimTask(request)
    return response.assignments[0] if response.assignments else None


async def job_with_tasks(cluster: Any, script: str, extra: int) -> str:
    """A job with its seed task and `extra` more tasks of sequence 0, all runnable."""
    job = await cluster.jobs.CreateJob(create_job(script=script))
    for _ in range(extra):
        request = TSP.CreateTaskRequest(job_task=task(job_uuid=job.uuid, sequence=0))
        await cluster.tasks.CreateTask(request)
    return str(job.uuid)


async def claim_many(cluster: Any, worker_id: str, n: int) -> list[TSP.TaskAssignment]:
    """One claim of up to n tasks (max_tasks and free slots n) on node1."""
    request = TSP.ClaimTaskRequest(
        worker=TSP.WorkerInfo(worker_id=worker_id, node_name="node1", free_slots=n),
        max_tasks=n,
    )
    return list((await cluster.tasks.ClaimTask(request)).assignments)


class Run:
    """One RunTask stream, driven message by message."""

    def __init__(self, cluster: Any, assignment: TSP.TaskAssignment, stub: Any = None) -> None:
        self.assignment = assignment
        # grpc.aio's client interceptors miss calls driven by write(): say who we are here.
        self.call = (stub or cluster.tasks).RunTask(metadata=token_md(cluster.root_token))
        self.seq = 0
        self.first = True

    async def send(self, **fields: Any) -> int:
        self.seq += 1
        msg = TSP.RunTaskRequest(seq=self.seq, **fields)
        if self.first:
            msg.task_uuid = self.assignment.task.uuid
            msg.lease_id = self.assignment.lease.lease_id
            self.first = False
        await self.call.write(msg)
        return self.seq

    async def recv(self, within: float = DEADLINE) -> TSP.RunTaskResponse | None:
        response = await asyncio.wait_for(self.call.read(), within)
        return None if response is grpc.aio.EOF else response  # type: ignore[attr-defined]

    async def until(
        self, check: Callable[[TSP.RunTaskResponse], bool], within: float = DEADLINE
    ) -> TSP.RunTaskResponse:
        deadline = time.monotonic() + within
        while True:
            response = await self.recv(max(deadline - time.monotonic(), 0.01))
            assert response is not None, "the stream ended"
            if check(response):
                return response

    async def acked(self, seq: int, within: float = DEADLINE) -> TSP.RunTaskResponse:
        return await self.until(lambda r: r.acked_seq >= seq, within)

    async def exit(self, within: float = 5.0, **fields: Any) -> TSP.RunTaskResponse:
        """Sends the exit (exit_code 0 unless told otherwise) and returns the final answer."""
        if not {"exit_code", "signal", "handed_back"} & fields.keys():
            fields["exit_code"] = 0
        await self.send(**fields)
        final = await self.until(lambda r: r.HasField("task"), within)
        assert await self.recv() is None  # the server closes the stream after the decision
        return final


async def count_events(cluster: Any, type_: str, task_uuid: str | None = None) -> int:
    """Rows of the change feed, read from the store itself."""
    from jobtask.store.schema import events

    query = select(func.count()).select_from(events).where(events.c.type == type_)
    if task_uuid is not None:
        query = query.where(events.c.task_uuid == task_uuid)
    async with cluster.services.core.db.read() as conn:
        return int((await conn.execute(query)).scalar() or 0)


def watch(cluster: Any, job_uuid: str, after_seq: int | None = None, stub: Any = None) -> Any:
    """A WatchTasks call (stub: another process's TaskService)."""
    request = TSP.WatchTasksRequest(job_uuid=job_uuid)
    if after_seq is not None:
        request.after_seq = after_seq
    return (stub or cluster.tasks).WatchTasks(request, metadata=token_md(cluster.root_token))


async def watch_events(
    cluster: Any, job_uuid: str, after_seq: int | None = None, limit: int | None = None
) -> list[watch_pb2.WatchEvent]:
    """Reads a WatchTasks stream until it closes (the job is terminal) or `limit` events
    that are not heartbeats arrived."""
    call = watch(cluster, job_uuid, after_seq)
    out: list[watch_pb2.WatchEvent] = []
    try:
        async for event in call:
            if event.type == watch_pb2.WATCH_EVENT_TYPE_HEARTBEAT:
                continue
            out.append(event)
            if limit is not None and len(out) >= limit:
                break
    finally:
        call.cancel()
    return out
