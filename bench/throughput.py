"""1. Throughput: no-op tasks from submit to all completed, on SQLite and on PostgreSQL,
with 1 and with 4 worker processes, side by side with Huey (SQLite), PgQueuer and
procrastinate (PostgreSQL) draining as many.

What is measured, jobtask (server in one process, each worker in its own):
- "fan-out job": one job is submitted; WORKERS no-op worker processes (bench.noop_worker,
  100 slots each, one WorkerSession each) start together; one of them claims the job's
  first task, which creates COUNT tasks with its own token (BatchCreateTasks, 1,000 a call)
  and completes; all of them run the tasks as in-process functions. The figure is COUNT /
  (time from the workers' start to the last completion).
- "one-task jobs": COUNT jobs are submitted with BatchCreateJobs, BATCH_JOBS jobs a call and
  BATCH_IN_FLIGHT calls in flight (each job is seeded with its one task), then the workers
  drain them. The figure is COUNT / (submit time + drain time).
- "one-task jobs, CreateJob each": the same with one CreateJob call per job,
  SUBMIT_CONCURRENCY in flight (the server groups concurrent submissions' commits).
One worker also drains COUNT tasks from bench.bare's store-less TaskService (WorkerSession
answered at once): the most any store could reach with this protocol and this worker, on
this machine. It is printed in the notes.
Peers, each in the same two phases: the parent enqueues no-op tasks (Huey: one `task()`
call each; procrastinate: one `defer_async()` each, then ANALYZE; PgQueuer: its list form of
`enqueue`, 1,000 jobs per call, into its own schema from `Queries.install`), then one
consumer process drains them (Huey: 1 thread worker, polling delay 1 ms; procrastinate: one
worker, concurrency 1; PgQueuer: one QueueManager, `batch_size` 10 and 100, `mode=drain`).
Huey and procrastinate drain COUNT tasks, PgQueuer PGQUEUER_JOBS (the issue's 10,000).
Figure: tasks / (enqueue time + drain time); drain-only rates are in the notes. Tasks do
nothing in all of them.

The 100,000-task fan-out (`python -m bench --big` or JOBTASK_BENCH_BIG=1; not in the
default run): the fan-out case alone, one worker, BIG_TASKS tasks, on both stores.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jobtask.v1 import job_pb2
from sqlalchemy.engine import make_url

from bench import peers
from bench.fleet import Fleet, fleet
from bench.harness import (
    Child,
    Config,
    PostgresCpu,
    Result,
    child,
    log,
    own_cpu_seconds,
)
from bench.stack import database, running

SLOTS = 100
# Tasks per system, the size (python -m bench --tasks N for another): the whole
# suite took about 8 minutes on the 2-core machines with one worker count; the 4-worker
# runs and the latency benchmark add to that (not yet timed at this size).
TASKS = 10_000
# Worker processes (python -m bench --workers 1,4): each row is measured with each count.
WORKERS: tuple[int, ...] = (1, 4)
SUBMIT_CONCURRENCY = 32
# The one-task jobs case: jobs per BatchCreateJobs call, and calls in flight.
BATCH_JOBS = 100
BATCH_IN_FLIGHT = 4
# PgQueuer's run: the 10,000 jobs whatever --tasks says (it drains them in seconds).
PGQUEUER_JOBS = 10_000
PGQUEUER_BATCHES = (10, 100)
# The 100,000-task fan-out (--big / JOBTASK_BENCH_BIG=1).
BIG_TASKS = 100_000
BIG = os.environ.get("JOBTASK_BENCH_BIG", "") not in ("", "0")
# The job bench.bare's store-less TaskService assigns tasks of.
BARE_JOB = job_pb2.Job(uuid="zzzzz-8i9sb-000000000000000", script="noop")


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@dataclass
class Observed:
    """What bench.ceiling asks a run to note beside its figure: the measured window (wall
    clock, time.time()) and the CPU seconds each process spent in it, by role."""

    server_args: Sequence[str] = ()
    window: tuple[float, float] = (0.0, 0.0)
    cpu: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class Meter:
    """CPU seconds spent between start() and stop(), by role: each part's processes, this
    process (the load generator; the sampler thread taken out) and, on PostgreSQL, the
    backends serving the run's database. On SQLite the database runs inside the process
    that sends the statements."""

    def __init__(self, url: str, parts: dict[str, Child | Sequence[Child]] | None = None) -> None:
        self.parts = parts or {}
        postgres = url.startswith("postgresql")
        self.pg = PostgresCpu(make_url(url).database or "") if postgres else None
        self.before: dict[str, float] = {}
        self.own = 0.0

    def _parts(self) -> dict[str, float]:
        return {
            name: sum(p.cpu_seconds() for p in ([procs] if isinstance(procs, Child) else procs))
            for name, procs in self.parts.items()
        }

    def start(self) -> None:
        self.before = self._parts()
        self.own = own_cpu_seconds()
        if self.pg:
            self.pg.start()

    def stop(self) -> dict[str, float]:
        cpu = {k: v - self.before[k] for k, v in self._parts().items()}
        cpu["database"] = self.pg.stop() if self.pg else 0.0
        sampler = self.pg.own if self.pg else 0.0
        cpu["load generator"] = own_cpu_seconds() - self.own - sampler
        return cpu


async def jobtask_fanout(
    kind: str, count: int, workers: int = 1, seen: Observed | None = None, *, jobs: int = 1
) -> tuple[float, str]:
    """`jobs` > 1: that many fan-out jobs of count / jobs tasks each, drained together (no
    job's row shared by all of the claims and report groups: bench.fanout_cpu --jobs)."""
    if count % jobs:
        raise ValueError(f"{count} tasks do not split into {jobs} jobs")
    extra = seen.server_args if seen else ()
    async with database(kind) as url, running(url, extra=extra) as stack:
        for _ in range(jobs):
            await stack.submit()
        async with fleet(stack, workers, SLOTS, creator=count // jobs) as f:
            meter = Meter(url, {"server": stack.server, "worker": f.procs})
            meter.start()
            f.go()
            seconds = await f.until(count + jobs)
            if seen:
                seen.cpu = meter.stop()
                seen.window = (f.started, f.started + seconds)
                seen.seconds = seconds
            await f.finish()
    create = f.create_seconds
    rate = count / seconds
    drain = count / (seconds - create)
    return rate, f"creating {count:,} tasks took {create:.1f} s; drain {drain:,.0f}/s{_lost(f)}"


def _lost(f: Fleet) -> str:
    if not f.lost:
        return ""
    return (
        f"; NOT CLEAN: the workers gave up {f.lost:,} leases (not renewed in time), "
        "counted as done when they gave up"
    )


async def jobtask_jobs(
    kind: str,
    count: int,
    workers: int = 1,
    *,
    batch: int | None = BATCH_JOBS,
    seen: Observed | None = None,
) -> tuple[float, str]:
    """One-task jobs: submitted `batch` a BatchCreateJobs call (None: a CreateJob each).
    `seen` gets the drain's window and CPU (the submission is not in it)."""
    extra = seen.server_args if seen else ()
    async with database(kind) as url, running(url, extra=extra) as stack:
        todo = iter(range(count))

        async def submitter() -> None:
            for _ in todo:
                await stack.submit()

        async def submit_all() -> None:
            if batch is None:
                await asyncio.gather(*(submitter() for _ in range(SUBMIT_CONCURRENCY)))
            else:
                await stack.submit_in_batches(count, batch, BATCH_IN_FLIGHT)

        async with fleet(stack, workers, SLOTS) as f:
            start = time.perf_counter()
            await submit_all()
            submit = time.perf_counter() - start
            meter = Meter(url, {"server": stack.server, "worker": f.procs})
            meter.start()
            f.go()
            seconds = await f.until(count)
            if seen:
                seen.cpu = meter.stop()
                seen.window = (f.started, f.started + seconds)
                seen.seconds = seconds
            await f.finish()
    total = submit + seconds
    note = f"submit {count / submit:,.0f}/s, drain {count / seconds:,.0f}/s{_lost(f)}"
    return count / total, note


async def protocol_ceiling(count: int, addr: str = "", seen: Observed | None = None) -> float:
    """Tasks/s the no-op worker drains from a TaskService that does no work at all (at
    `addr`, a bench.bare already running; else one of its own)."""
    if addr:
        worker = ("bench.noop_worker", addr, addr, "-", str(count), str(SLOTS))
        async with child(*worker) as (_, out):
            if seen:
                seen.cpu = {"worker": out["cpu"]}
                seen.seconds = out["seconds"]
            return float(count / out["seconds"])
    async with child("bench.bare", BARE_JOB.SerializeToString().hex()) as (_, ready):
        return await protocol_ceiling(count, f"127.0.0.1:{ready['port']}", seen)


def _peer_seen(seen: Observed | None, meter: Meter, out: dict[str, Any], wall: float) -> None:
    """A peer's CPU by role: its consumer process reports its own."""
    cpu = meter.stop()
    if seen:
        seen.cpu = {"consumer": out["cpu"], **cpu}
        seen.seconds = wall


async def huey(count: int, seen: Observed | None = None) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="bench-huey-") as tmp:
        path = os.path.join(tmp, "huey.sqlite3")
        noop = await asyncio.to_thread(peers.prepare_huey, path)
        meter = Meter(path)
        meter.start()
        start = time.perf_counter()
        await asyncio.to_thread(peers.enqueue_huey, noop, count)
        enqueue = time.perf_counter() - start
        async with child("bench.peers", "huey", path, str(count), within=900) as (_, out):
            drain = out["seconds"]
            _peer_seen(seen, meter, out, enqueue + drain)
    return count / (
        enqueue + drain
    ), f"enqueue {count / enqueue:,.0f}/s, drain {count / drain:,.0f}/s"


async def procrastinate(count: int, seen: Observed | None = None) -> tuple[float, str]:
    from bench.stack import postgres_database

    async with postgres_database("procrastinate_bench") as dsn:
        await peers.prepare_procrastinate(dsn)
        meter = Meter(dsn)
        meter.start()
        start = time.perf_counter()
        await peers.enqueue_procrastinate(dsn, count)
        enqueue = time.perf_counter() - start
        async with child("bench.peers", "procrastinate", dsn, str(count), within=900) as (_, out):
            drain = out["seconds"]
            _peer_seen(seen, meter, out, enqueue + drain)
    return count / (
        enqueue + drain
    ), f"enqueue {count / enqueue:,.0f}/s, drain {count / drain:,.0f}/s"


async def pgqueuer(count: int, batch_size: int, seen: Observed | None = None) -> tuple[float, str]:
    from bench.stack import postgres_database

    async with postgres_database("pgqueuer_bench") as dsn:
        conn, queries = await peers.prepare_pgqueuer(dsn)
        try:
            meter = Meter(dsn)
            meter.start()
            start = time.perf_counter()
            await peers.enqueue_pgqueuer(queries, count)
            enqueue = time.perf_counter() - start
        finally:
            await conn.close()
        args = ("pgqueuer", dsn, str(count), str(batch_size))
        async with child("bench.peers", *args, within=900) as (_, out):
            drain = out["seconds"]
            _peer_seen(seen, meter, out, enqueue + drain)
    return count / (enqueue + drain), (
        f"{count:,} jobs: enqueue {count / enqueue:,.0f}/s, drain {count / drain:,.0f}/s"
    )


Peer = tuple[str, float | None, str, float]  # name, tasks/s, note, target factor


async def _peers(kind: str, count: int, cfg: Config) -> list[Peer]:
    """The references of one store, each measured once: (name, rate, note, target)."""
    missing = "not installed (pip install -e '.[bench]')"
    found: list[Peer] = []
    if kind == "sqlite":
        rate, note = None, f"huey {missing}"
        if _have("huey"):
            log(f"throughput: Huey (SQLite), {count:,} tasks")
            rate, note = await huey(count)
        return [("Huey (SQLite)", rate, note, 1.0)]
    jobs = cfg.pick(PGQUEUER_JOBS, 50)
    targets = {10: 1.0, 100: 0.5}
    for batch in PGQUEUER_BATCHES:
        rate, note = None, f"pgqueuer {missing}"
        if _have("pgqueuer"):
            log(f"throughput: PgQueuer, {jobs:,} jobs, batch_size {batch}")
            rate, note = await pgqueuer(jobs, batch)
        found.append((f"PgQueuer batch_size {batch}", rate, note, targets.get(batch, 1.0)))
    rate, note = None, f"procrastinate {missing}"
    if _have("procrastinate"):
        log(f"throughput: procrastinate, {count:,} tasks")
        rate, note = await procrastinate(count)
    found.append(("procrastinate (PG)", rate, note, 3.0))
    return found


async def run(cfg: Config) -> list[Result]:
    count = cfg.pick(TASKS, 50)
    results: list[Result] = []
    log(f"throughput: the protocol's ceiling (no store), {count:,} tasks")
    ceiling = await protocol_ceiling(count)
    for kind in ("sqlite", "postgres"):
        refs = await _peers(kind, count, cfg)
        for workers in WORKERS:
            w = f"{workers} worker{'s' if workers > 1 else ''}"
            log(f"throughput: jobtask on {kind}, fan-out job of {count:,} tasks, {w}")
            fan_rate, fan_note = await jobtask_fanout(kind, count, workers)
            log(f"throughput: jobtask on {kind}, {count:,} one-task jobs (batched), {w}")
            jobs_rate, jobs_note = await jobtask_jobs(kind, count, workers)
            log(f"throughput: jobtask on {kind}, {count:,} one-task jobs (CreateJob each), {w}")
            each_rate, each_note = await jobtask_jobs(kind, count, workers, batch=None)
            batched = f"one-task jobs (BatchCreateJobs, {BATCH_JOBS} a call)"
            each = f"one-task jobs (CreateJob each, {SUBMIT_CONCURRENCY} in flight)"
            for label, rate, note in (
                ("fan-out job", fan_rate, fan_note),
                (batched, jobs_rate, jobs_note),
                (each, each_rate, each_note),
            ):
                for i, (name, peer_rate, peer_note, factor) in enumerate(refs):
                    # Each figure's note once, each peer's once (on the first figure).
                    notes = [note] if i == 0 else []
                    if not results or all(r.reference != name for r in results):
                        notes.append(f"{name}: {peer_note}")
                    r = Result(
                        f"throughput {kind}",
                        f"{count:,} no-op tasks, {label}, {w}",
                        "tasks/s",
                        rate,
                        name,
                        peer_rate,
                        target=f">= {factor:g}x",
                        note="; ".join(notes),
                    )
                    if not cfg.smoke and r.ratio is not None:
                        r.met = r.ratio >= factor
                    results.append(r)
    huey_rate = next((r.reference_value for r in results if r.reference == "Huey (SQLite)"), None)
    r = Result(
        "throughput no store",
        f"{count:,} no-op tasks drained from bench/bare.py, 1 worker",
        "tasks/s",
        ceiling,
        "Huey (SQLite)",
        huey_rate,
        target=">= 10x",
        note="the worker session's own ceiling: the same worker, a TaskService with no store",
    )
    if not cfg.smoke and r.ratio is not None:
        r.met = r.ratio >= 10
    results.append(r)
    if BIG:
        results.extend(await big(cfg))
    return results


async def big(cfg: Config) -> list[Result]:
    """The 100,000-task fan-out job on both stores, one worker (--big)."""
    count = cfg.pick(BIG_TASKS, 100)
    results = []
    for kind in ("sqlite", "postgres"):
        log(f"throughput: jobtask on {kind}, fan-out job of {count:,} tasks (--big)")
        start = time.perf_counter()
        rate, note = await jobtask_fanout(kind, count, 1)
        wall = time.perf_counter() - start
        results.append(
            Result(
                f"throughput {kind}",
                f"{count:,}-task fan-out job, 1 worker",
                "tasks/s",
                rate,
                note=f"{note}; {count / rate:,.0f} s from the worker's start, {wall:,.0f} s in all",
            )
        )
    return results
