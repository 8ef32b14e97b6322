"""1. Throughput: no-op tasks from submit to all completed, on SQLite and on PostgreSQL,
side by side with Huey (SQLite) and procrastinate (PostgreSQL) draining as many.

What is measured, jobtask (server in one process, the worker in another):
- "fan-out job": one job is submitted; the worker (bench.noop_worker, 100 slots) claims its
  first task, which creates COUNT tasks with its own token (BatchCreateTasks, 1,000 a call)
  and completes; the worker then claims them 100 at a time (ClaimTask max_tasks) and runs
  each over its own RunTask stream (one message: progress 1.0, success, exit 0). The figure
  is COUNT / (time from the worker's first claim to the last completion).
- "one-task jobs": COUNT jobs are submitted (CreateJob, 32 in flight; each job is seeded
  with its one task), then the worker drains them as above. The figure is COUNT / (submit
  time + drain time).
The same worker also drains COUNT tasks from bench.bare's store-less TaskService (ClaimTask
and RunTask answered at once): the most any store could reach with this protocol -- one
RunTask stream per task -- and this worker, on this machine. It is printed in the notes.
Peers, each in the same two phases: the parent enqueues COUNT no-op tasks (Huey: one
`task()` call each; procrastinate: one `defer_async()` each, then ANALYZE), then one consumer
process drains them (Huey: 1 thread worker, polling delay 1 ms; procrastinate: one worker,
concurrency 1). Figure: COUNT / (enqueue time + drain time); drain-only rates are in the
notes. Tasks do nothing in all three systems.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import tempfile
import time

from jobtask.v1 import job_pb2

from bench import peers
from bench.harness import Config, Result, child, log
from bench.stack import database, running

SLOTS = 100
# Tasks per system, the size (python -m bench --tasks N for another): the whole
# suite takes about 8 minutes on the 2-core machines.
TASKS = 10_000
SUBMIT_CONCURRENCY = 32


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


async def _drain(stack, count: int, creator: int = 0) -> dict:  # type: ignore[no-untyped-def]
    args = [stack.jobs_addr, stack.tasks_addr, stack.token, str(count), str(SLOTS)]
    if creator:
        args += ["--creator", str(creator)]
    async with child("bench.noop_worker", *args, within=900) as (_, out):
        return out


async def jobtask_fanout(kind: str, count: int) -> tuple[float, str]:
    async with database(kind) as url, running(url) as stack:
        await stack.submit()
        out = await _drain(stack, count + 1, creator=count)
    rate = count / out["seconds"]
    drain = count / (out["seconds"] - out["create_seconds"])
    return (
        rate,
        f"creating {count:,} tasks took {out['create_seconds']:.1f} s; drain {drain:,.0f}/s",
    )


async def jobtask_jobs(kind: str, count: int) -> tuple[float, str]:
    async with database(kind) as url, running(url) as stack:
        todo = iter(range(count))

        async def submitter() -> None:
            for _ in todo:
                await stack.submit()

        start = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(SUBMIT_CONCURRENCY)))
        submit = time.perf_counter() - start
        out = await _drain(stack, count)
    total = submit + out["seconds"]
    return count / total, (f"submit {count / submit:,.0f}/s, drain {count / out['seconds']:,.0f}/s")


async def protocol_ceiling(count: int) -> float:
    """Tasks/s the no-op worker drains from a TaskService that does no work at all."""
    job = job_pb2.Job(uuid="zzzzz-8i9sb-000000000000000", script="noop")
    async with child("bench.bare", job.SerializeToString().hex()) as (_, ready):
        addr = f"127.0.0.1:{ready['port']}"
        worker = ("bench.noop_worker", addr, addr, "-", str(count), str(SLOTS))
        async with child(*worker) as (_, out):
            return float(count / out["seconds"])


async def huey(count: int) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="bench-huey-") as tmp:
        path = os.path.join(tmp, "huey.sqlite3")
        start = time.perf_counter()
        await asyncio.to_thread(peers.enqueue_huey, path, count)
        enqueue = time.perf_counter() - start
        async with child("bench.peers", "huey", path, str(count), within=900) as (_, out):
            drain = out["seconds"]
    return count / (
        enqueue + drain
    ), f"enqueue {count / enqueue:,.0f}/s, drain {count / drain:,.0f}/s"


async def procrastinate(count: int) -> tuple[float, str]:
    from bench.stack import postgres_database

    async with postgres_database("procrastinate_bench") as dsn:
        start = time.perf_counter()
        await peers.enqueue_procrastinate(dsn, count)
        enqueue = time.perf_counter() - start
        async with child("bench.peers", "procrastinate", dsn, str(count), within=900) as (_, out):
            drain = out["seconds"]
    return count / (
        enqueue + drain
    ), f"enqueue {count / enqueue:,.0f}/s, drain {count / drain:,.0f}/s"


async def run(cfg: Config) -> list[Result]:
    count = cfg.pick(TASKS, 50)
    results: list[Result] = []
    peer_of = {
        "sqlite": ("Huey (SQLite)", huey, 1.0),
        "postgres": ("procrastinate (PG)", procrastinate, 2.0),
    }
    log(f"throughput: the protocol's ceiling (no store), {count:,} tasks")
    ceiling = await protocol_ceiling(count)
    for kind in ("sqlite", "postgres"):
        name, peer, factor = peer_of[kind]
        module = "huey" if kind == "sqlite" else "procrastinate"
        peer_rate, peer_note = None, f"{module} not installed (pip install -e '.[bench]')"
        if _have(module):
            log(f"throughput: {name}, {count:,} tasks")
            peer_rate, peer_note = await peer(count)
        log(f"throughput: jobtask on {kind}, fan-out job of {count:,} tasks")
        fan_rate, fan_note = await jobtask_fanout(kind, count)
        log(f"throughput: jobtask on {kind}, {count:,} one-task jobs")
        jobs_rate, jobs_note = await jobtask_jobs(kind, count)
        for label, rate, note in (
            ("fan-out job", fan_rate, fan_note),
            ("one-task jobs", jobs_rate, jobs_note),
        ):
            r = Result(
                f"throughput {kind}",
                f"{count:,} no-op tasks, {label}",
                "tasks/s",
                rate,
                name,
                peer_rate,
                target=f">= {factor:g}x",
                note=(
                    f"{note}; peer: {peer_note}; "
                    f"the protocol without a store drains {ceiling:,.0f}/s"
                ),
            )
            if not cfg.smoke and r.ratio is not None:
                r.met = r.ratio >= factor
            results.append(r)
    return results
