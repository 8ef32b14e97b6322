"""What WatchJob streams cost the server process that serves them when the writes are made
by another process (issue 16, point 7): the deployment where watchers (the dashboard, the
CLI's and the SDK's `watch`) reach a JobService replica that is not the one committing, so
it hears the commits by polling the feed (SQLite) or by LISTEN (PostgreSQL).

    python -m bench.watch_cpu sqlite|postgres [--tasks N] [--watchers 0,1,5,20]
        [--idle-jobs M] [--checkout DIR] [--rounds R]

Per watcher count K (and round), on a fresh store: a writer (bench.server: JobService and
TaskService) with one no-op worker (bench.noop_worker --creator N: one job whose first task
creates N tasks, then all of them run), and the watching process, `jobtask serve jobs` of
DIR's venv (default: this checkout), on the same store. K WatchJob streams of the busy job
(packed, max_events_per_message 256, as the SDK asks) and M streams of M idle jobs (jobs
that wait for 1,000 nodes: every commit of the busy job wakes them too, as in
tests/scale/test_replicas) are open before the worker starts. Measured: the watching
process's CPU (/proc) from the worker's start until every busy watcher saw the job end,
per task and per event delivered (events summed over the busy watchers). K = 0 and M = 0 is
the idle cost of the process: polling or LISTEN alone.

With JOBTASK_BENCH_PROFILE_DIR set, the watching process is recorded by py-spy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from jobtask.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, watch_pb2

from bench.fleet import fleet
from bench.harness import ROOT, bearer, proc_cpu_seconds
from bench.profile import recording
from bench.stack import CHANNEL_OPTIONS, Stack, database, running

SLOTS = 4
PER_MESSAGE = 256
_ANNOUNCED = re.compile(r"^JobService: (\S+)")


@contextlib.asynccontextmanager
async def watch_server(checkout: Path, url: str, name: str) -> AsyncIterator[tuple[int, str]]:
    """`jobtask serve jobs` of `checkout` on `url`: its pid and address."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "JOBTASK_DATABASE_URL": url,
        "JOBTASK_JOBS_LISTEN": "127.0.0.1:0",
    }
    python = checkout / ".venv" / "bin" / "python"
    proc = await asyncio.create_subprocess_exec(
        str(python),
        "-m",
        "jobtask.cli.main",
        "serve",
        "jobs",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=checkout,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
        found = _ANNOUNCED.match(line)
        if found is None:
            raise RuntimeError(f"the watching server printed {line!r}")
        with recording(proc.pid, name):
            yield proc.pid, found.group(1)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def watch(
    stub: job_service_pb2_grpc.JobServiceStub, token: str, uuid: str, opened: asyncio.Event
) -> tuple[int, int]:
    """Follows a job until its stream ends: (events after the snapshot, messages)."""
    request = job_service_pb2.WatchJobRequest(uuid=uuid, max_events_per_message=PER_MESSAGE)
    events = messages = 0
    call = stub.WatchJob(request, metadata=bearer(token))
    async for event in call:
        if event.type == watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT:
            if event.snapshot_done:
                opened.set()
            continue
        if event.type == watch_pb2.WATCH_EVENT_TYPE_HEARTBEAT:
            continue
        messages += 1
        events += 1 + len(event.more)
    return events, messages


async def idle_job(stack: Stack) -> str:
    """A job no worker may start (it waits for 1,000 live nodes)."""
    job = job_pb2.Job(script="noop")
    job.runtime_constraints.min_nodes = 1000
    request = job_service_pb2.CreateJobRequest(job=job, allow_duplicate=True)
    created: job_pb2.Job = await stack.jobs.CreateJob(request, metadata=stack.md)
    return created.uuid


async def one(kind: str, tasks: int, watchers: int, idle: int, checkout: Path) -> str:
    async with (
        database(kind) as url,
        running(url) as stack,
        watch_server(checkout, url, f"watch-{kind}-{watchers}") as (pid, addr),
    ):
        channel = grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)
        stub = job_service_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
        busy = (await stack.submit()).uuid
        idle_uuids = [await idle_job(stack) for _ in range(idle)]
        opened = [asyncio.Event() for _ in range(watchers + idle)]
        streams = [
            asyncio.create_task(watch(stub, stack.token, uuid, opened[i]))
            for i, uuid in enumerate([busy] * watchers + idle_uuids)
        ]
        await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), 120)
        try:
            async with fleet(stack, 1, SLOTS, creator=tasks) as f:
                before = proc_cpu_seconds(pid)
                start = time.perf_counter()
                f.go()
                await f.until(tasks + 1)
                seen = await asyncio.wait_for(asyncio.gather(*streams[:watchers]), 300)
                seconds = time.perf_counter() - start
                cpu = proc_cpu_seconds(pid) - before
                await f.finish()
        finally:
            for stream in streams:
                stream.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
            await channel.close(None)
    events = sum(e for e, _ in seen)
    messages = sum(m for _, m in seen)
    per_event = f"{cpu * 1e6 / events:,.0f}" if events else "-"
    return (
        f"{kind} K={watchers} idle={idle}: {tasks + 1:,} tasks in {seconds:.1f} s; watching "
        f"process CPU {cpu:.2f} s = {cpu * 1e6 / (tasks + 1):,.0f} µs a task, {per_event} µs "
        f"an event delivered ({events:,} events in {messages:,} messages to {watchers} "
        f"watcher(s))"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--watchers", default="0,1,5,20")
    parser.add_argument("--idle-jobs", type=int, default=0)
    parser.add_argument("--checkout", type=Path, default=ROOT)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for r in range(args.rounds):
        for k in (int(v) for v in args.watchers.split(",")):
            line = await one(args.kind, args.tasks, k, args.idle_jobs, args.checkout.resolve())
            print(f"[{args.checkout.name} r{r + 1}] {line}", flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
