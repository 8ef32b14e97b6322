"""A no-op worker in its own process, driving the worker protocol directly (no scripts, no
child processes): ClaimTask with max_tasks=SLOTS, then one RunTask stream per claimed task
whose single message opens the stream and reports the end (progress 1.0, success, exit
code 0), so the task completes by the seeds' rule. Up to SLOTS tasks are in flight.

    python -m bench.noop_worker TASKS_ADDR TOKEN COUNT SLOTS [--creator CHILDREN]

With --creator, the first task claimed first creates CHILDREN tasks with its own token
(16 CreateTask calls in flight), as a crunch script's first task queues its job's work,
and then completes; COUNT includes it. Prints {"seconds": s, "create_seconds": c,
"completed": n} when COUNT tasks have completed.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc
from jobtask.v1 import job_task_pb2, task_service_pb2, task_service_pb2_grpc
from jobtask.v1.task_service_pb2 import RunTaskRequest, TaskAssignment

from bench.harness import announce, bearer
from bench.stack import CHANNEL_OPTIONS

COMPLETED = job_task_pb2.TASK_STATUS_COMPLETED


class NoopWorker:
    def __init__(self, stub: task_service_pb2_grpc.TaskServiceStub, token: str, slots: int):
        self.stub = stub
        self.md = bearer(token)
        self.slots = slots
        self.inflight = 0
        self.completed = 0
        self.other = 0
        self.freed = asyncio.Event()

    async def claim(self, n: int) -> list[TaskAssignment]:
        request = task_service_pb2.ClaimTaskRequest(
            worker=task_service_pb2.WorkerInfo(
                worker_id="bench-noop-worker", node_name="bench-node", free_slots=n, cores=2
            ),
            max_tasks=n,
        )
        request.wait.FromSeconds(1)
        response = await self.stub.ClaimTask(request, metadata=self.md)
        return list(response.assignments)

    async def finish(self, a: TaskAssignment) -> job_task_pb2.JobTask:
        call = self.stub.RunTask(metadata=self.md)
        await call.write(
            RunTaskRequest(
                task_uuid=a.task.uuid,
                lease_id=a.lease.lease_id,
                seq=1,
                progress=1.0,
                success=True,
                exit_code=0,
            )
        )
        await call.done_writing()
        final = None
        async for response in call:
            if response.HasField("task"):
                final = response.task
        if final is None:
            raise RuntimeError(f"task {a.task.uuid}: no final answer")
        return final

    async def run_creator(self, a: TaskAssignment, children: int) -> job_task_pb2.JobTask:
        """The first task: creates the children while its RunTask stream keeps the lease
        (a heartbeat every ttl/3, as the worker agent sends), then reports its end."""
        call = self.stub.RunTask(metadata=self.md)
        await call.write(RunTaskRequest(task_uuid=a.task.uuid, lease_id=a.lease.lease_id))
        final: list[job_task_pb2.JobTask] = []

        async def read() -> None:
            async for response in call:
                if response.HasField("task"):
                    final.append(response.task)

        reader = asyncio.create_task(read())
        creating = asyncio.create_task(create_children(self.stub, a, children))
        interval = a.lease.ttl.ToTimedelta().total_seconds() / 3
        seq = 0
        while not creating.done():
            await asyncio.wait([creating], timeout=interval)
            if not creating.done():
                seq += 1
                await call.write(RunTaskRequest(seq=seq))
        await creating
        await call.write(RunTaskRequest(seq=seq + 1, progress=1.0, success=True, exit_code=0))
        await call.done_writing()
        await reader
        if not final:
            raise RuntimeError(f"task {a.task.uuid}: no final answer")
        return final[0]

    async def _run_one(self, a: TaskAssignment) -> None:
        try:
            final = await self.finish(a)
            if final.status == COMPLETED:
                self.completed += 1
            else:
                self.other += 1
        finally:
            self.inflight -= 1
            self.freed.set()

    async def drain(self, count: int) -> None:
        running: set[asyncio.Task[None]] = set()
        while self.completed + self.inflight < count:
            free = min(self.slots - self.inflight, count - self.completed - self.inflight)
            if free <= 0:
                self.freed.clear()
                await self.freed.wait()
                continue
            for a in await self.claim(free):
                self.inflight += 1
                task = asyncio.create_task(self._run_one(a))
                running.add(task)
                task.add_done_callback(running.discard)
            if self.other:
                raise RuntimeError(f"{self.other} tasks did not complete")
        await asyncio.gather(*running)


async def create_children(stub: task_service_pb2_grpc.TaskServiceStub, a: TaskAssignment, n: int):
    md = bearer(a.task_token)
    todo = iter(range(n))

    async def creator() -> None:
        for _ in todo:
            task = job_task_pb2.JobTask(
                job_uuid=a.task.job_uuid, created_by_job_task_uuid=a.task.uuid, sequence=1
            )
            await stub.CreateTask(task_service_pb2.CreateTaskRequest(job_task=task), metadata=md)

    await asyncio.gather(*(creator() for _ in range(16)))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tasks_addr")
    parser.add_argument("token")
    parser.add_argument("count", type=int)
    parser.add_argument("slots", type=int)
    parser.add_argument("--creator", type=int, default=0)
    args = parser.parse_args()
    channel = grpc.aio.insecure_channel(args.tasks_addr, options=CHANNEL_OPTIONS)
    await channel.channel_ready()
    stub = task_service_pb2_grpc.TaskServiceStub(channel)
    worker = NoopWorker(stub, args.token, args.slots)
    start = time.perf_counter()
    create_seconds = 0.0
    if args.creator:
        (first,) = await worker.claim(1)
        final = await worker.run_creator(first, args.creator)
        create_seconds = time.perf_counter() - start
        if final.status != COMPLETED:
            raise RuntimeError(f"the creator task ended {final.status}")
        worker.completed += 1
    await worker.drain(args.count)
    seconds = time.perf_counter() - start
    announce(seconds=seconds, create_seconds=create_seconds, completed=worker.completed)
    await channel.close()


if __name__ == "__main__":
    asyncio.run(main())
