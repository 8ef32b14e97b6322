"""A running jobtask under test (bench.server in a child process) and the protocol steps the
benchmarks drive directly: submit, claim, run a task to its end, fan a job out to N tasks.

Databases: a fresh SQLite file, or a fresh PostgreSQL database created on the server named
by JOBTASK_BENCH_POSTGRES_URL (or JOBTASK_TEST_POSTGRES_URL; default
postgresql://jobtask:jobtask@127.0.0.1:5432/postgres)
and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import grpc
from google.protobuf import struct_pb2
from jobtask.v1 import (
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    job_task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
)
from sqlalchemy.engine import make_url

from bench.harness import Child, bearer, child
from bench.profile import recording

DEFAULT_PG = "postgresql://jobtask:jobtask@127.0.0.1:5432/postgres"
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def postgres_admin_url() -> str:
    """The server on which benchmarks create their databases (the test suite's, in CI)."""
    return (
        os.environ.get("JOBTASK_BENCH_POSTGRES_URL")
        or os.environ.get("JOBTASK_TEST_POSTGRES_URL")
        or DEFAULT_PG
    )


def _dsn(url: str, database: str) -> str:
    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def postgres_database(prefix: str = "jobtask_bench") -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database; yields its plain postgresql:// URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(_dsn(postgres_admin_url(), "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    try:
        yield _dsn(postgres_admin_url(), name)
    finally:
        admin = await asyncpg.connect(_dsn(postgres_admin_url(), "postgres"))
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    if kind == "postgres":
        async with postgres_database() as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="jobtask-bench-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'jobtask.sqlite3'}"


@dataclass
class Stack:
    """A jobtask under test, with stubs whose calls carry the system user's stored token."""

    server: Child
    url: str
    token: str
    jobs: job_service_pb2_grpc.JobServiceStub
    tasks: task_service_pb2_grpc.TaskServiceStub
    jobs_addr: str
    tasks_addr: str
    channels: list[grpc.aio.Channel]
    priority: int = 0
    # Plain users' tokens (owners "a" and "b").
    owners: list[str] = field(default_factory=list)

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.token)

    def task_stub(self) -> task_service_pb2_grpc.TaskServiceStub:
        channel = grpc.aio.insecure_channel(self.tasks_addr, options=CHANNEL_OPTIONS)
        self.channels.append(channel)
        return task_service_pb2_grpc.TaskServiceStub(channel)  # type: ignore[no-untyped-call]

    def job_stub(self) -> job_service_pb2_grpc.JobServiceStub:
        channel = grpc.aio.insecure_channel(self.jobs_addr, options=CHANNEL_OPTIONS)
        self.channels.append(channel)
        return job_service_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]

    # -- the protocol, driven directly ----------------------------------------------------

    async def submit(self, script: str = "noop", **fields: Any) -> job_pb2.Job:
        job = job_pb2.Job(script=script, **fields)
        request = job_service_pb2.CreateJobRequest(job=job, allow_duplicate=True)
        created: job_pb2.Job = await self.jobs.CreateJob(request, metadata=self.md)
        return created

    async def submit_many(self, n: int, script: str = "noop") -> list[job_pb2.Job]:
        """n jobs in one BatchCreateJobs call."""
        request = job_service_pb2.BatchCreateJobsRequest(
            requests=[
                job_service_pb2.CreateJobRequest(
                    job=job_pb2.Job(script=script), allow_duplicate=True
                )
                for _ in range(n)
            ]
        )
        response = await self.jobs.BatchCreateJobs(request, metadata=self.md)
        return list(response.jobs)

    async def submit_in_batches(self, count: int, batch: int, in_flight: int) -> None:
        """`count` jobs, `batch` a BatchCreateJobs call, `in_flight` calls at a time."""
        chunks = iter([min(batch, count - i) for i in range(0, count, batch)])

        async def submitter() -> None:
            for n in chunks:
                await self.submit_many(n)

        await asyncio.gather(*(submitter() for _ in range(in_flight)))

    async def claim(
        self, n: int, worker_id: str = "bench-worker", wait: float = 0.0
    ) -> Sequence[task_service_pb2.TaskAssignment]:
        request = task_service_pb2.ClaimTaskRequest(
            worker=task_service_pb2.WorkerInfo(
                worker_id=worker_id, node_name="bench-node", free_slots=n, cores=2
            ),
            max_tasks=n,
        )
        if wait:
            request.wait.FromNanoseconds(int(wait * 1e9))
        response = await self.tasks.ClaimTask(request, metadata=self.md)
        return list(response.assignments)

    async def finish(
        self, a: task_service_pb2.TaskAssignment, stub: Any = None
    ) -> job_task_pb2.JobTask:
        """Runs a claimed task to success over RunTask: the opening message, then one
        message with progress 1.0, success and exit code 0; returns the task as decided."""
        call = (stub or self.tasks).RunTask(metadata=self.md)
        await call.write(
            task_service_pb2.RunTaskRequest(task_uuid=a.task.uuid, lease_id=a.lease.lease_id)
        )
        await call.write(
            task_service_pb2.RunTaskRequest(seq=1, progress=1.0, success=True, exit_code=0)
        )
        await call.done_writing()
        final: job_task_pb2.JobTask | None = None
        async for response in call:
            if response.HasField("task"):
                final = response.task
        if final is None:
            raise RuntimeError(f"task {a.task.uuid} got no final answer")
        return final

    async def create_children(
        self,
        parent: task_service_pb2.TaskAssignment,
        count: int,
        *,
        sequence: int = 1,
        concurrency: int = 16,
    ) -> None:
        """CreateTask `count` times with the parent task's own token (a crunch script's
        first task queueing the job's work), `concurrency` calls in flight."""
        md = bearer(parent.task_token)
        job_uuid, parent_uuid = parent.task.job_uuid, parent.task.uuid
        todo = iter(range(count))

        async def creator() -> None:
            for i in todo:
                params = struct_pb2.Struct()
                params.update({"i": i})
                task = job_task_pb2.JobTask(
                    job_uuid=job_uuid,
                    created_by_job_task_uuid=parent_uuid,
                    sequence=sequence,
                    parameters=params,
                )
                await self.tasks.CreateTask(
                    task_service_pb2.CreateTaskRequest(job_task=task), metadata=md
                )

        await asyncio.gather(*(creator() for _ in range(concurrency)))

    async def fanned_out_job(
        self, sizes: Sequence[int], *, complete_parent: bool = True
    ) -> tuple[job_pb2.Job, task_service_pb2.TaskAssignment]:
        """A job whose first task created sizes[k] tasks of sequence k+1 (each sequence
        runnable once the lower ones completed) and then, by default, completed."""
        # Above every earlier job, so the claim below takes this job's first task.
        self.priority += 1
        job = await self.submit(priority=self.priority)
        (first,) = await self.claim(1)
        if first.task.job_uuid != job.uuid:
            raise RuntimeError("claimed another job's task: a job of higher priority waits")
        for k, size in enumerate(sizes):
            await self.create_children(first, size, sequence=k + 1)
        if complete_parent:
            await self.finish(first)
        return job, first

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close(None)


@contextlib.asynccontextmanager
async def running(
    url: str, *, lease_ttl: float = 30.0, name: str = "server", extra: Sequence[str] = ()
) -> AsyncIterator[Stack]:
    """A jobtask server on `url` (`extra`: more bench.server flags); profiled under `name`
    when profiling is on."""
    args = (url, "--lease-ttl", str(lease_ttl), *extra)
    async with child("bench.server", *args) as (proc, ready):
        with recording(proc.pid, f"{name}-{make_url(url).get_backend_name()}"):
            jobs_addr = f"127.0.0.1:{ready['jobs']}"
            tasks_addr = f"127.0.0.1:{ready['tasks']}"
            jc = grpc.aio.insecure_channel(jobs_addr, options=CHANNEL_OPTIONS)
            tc = grpc.aio.insecure_channel(tasks_addr, options=CHANNEL_OPTIONS)
            stack = Stack(
                server=proc,
                url=url,
                token=ready["token"],
                jobs=job_service_pb2_grpc.JobServiceStub(jc),  # type: ignore[no-untyped-call]
                tasks=task_service_pb2_grpc.TaskServiceStub(tc),  # type: ignore[no-untyped-call]
                jobs_addr=jobs_addr,
                tasks_addr=tasks_addr,
                channels=[jc, tc],
                owners=list(ready.get("owners", [])),
            )
            try:
                yield stack
            finally:
                await stack.close()


@contextlib.asynccontextmanager
async def bare_server(job: job_pb2.Job) -> AsyncIterator[tuple[Child, grpc.aio.Channel]]:
    async with child("bench.bare", job.SerializeToString().hex()) as (proc, ready):
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{ready['port']}", options=CHANNEL_OPTIONS)
        try:
            yield proc, channel
        finally:
            await channel.close(None)
