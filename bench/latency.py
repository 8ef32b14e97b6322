"""8. Dispatch latency, p50 and p99: from a task becoming runnable to its code starting in
the worker, on an idle system and under the throughput load, SQLite and PostgreSQL.

A probe is a one-task job whose script is "probe" (CreateJob seeds its one task, which is
runnable from that commit on). The probe's function, in bench.noop_worker, records
time.time() when it starts, minus its task's `created_at` (stamped by the server inside the
creating transaction, so a little before the commit: the figure errs on the high side).
Both run on this machine's one clock. The notes split it at the claim: the probe's
started_at (stamped by the server as it claims the task) minus created_at is the server's
part; the rest is the assignment reaching the worker and the function starting.

- Idle: one worker process (100 slots, WorkerSession), nothing else queued; PROBES probes
  created one at a time, RATE per second, after WARMUP probes sent the same way and not
  counted: the first tasks after a start run the claim's and the worker's paths for the
  first time (statements compiled and prepared, the first function started: 20-100 ms on
  PostgreSQL), which is the start-up's cost, not an idle system's. They get a row of their
  own (their worst), so the cold start stays in sight.
- Under load: the same worker drains a fan-out job of COUNT no-op tasks (the throughput
  benchmark's case, its --tasks); while it does, probes are created at RATE per second at a
  higher job priority than the fan-out job's (so each waits for a free slot and a dispatch,
  not behind the backlog), until the fan-out is done or PROBES were sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bench import throughput
from bench.fleet import fleet
from bench.harness import Config, Result, log, percentile
from bench.stack import Stack, database, running

PROBES = 200
WARMUP = 5
RATE = 20.0
TARGET_MS = 50.0


async def _probes(stack: Stack, n: int, more: Callable[[int], bool] = lambda sent: True) -> int:
    """Submits up to `n` probe jobs, RATE a second, one at a time, while more(sent) holds.
    Returns how many were sent."""
    start = time.monotonic()
    sent = 0
    while sent < n and more(sent):
        await stack.submit("probe", priority=1)
        sent += 1
        await asyncio.sleep(max(0.0, sent / RATE - (time.monotonic() - start)))
    return sent


async def idle(
    kind: str, probes: int, warmup: int = WARMUP
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The first `warmup` probes after the start, then `probes` more: (first, rest)."""
    async with (
        database(kind) as url,
        running(url, name="latency") as stack,
        fleet(stack, 1, throughput.SLOTS) as f,
    ):
        f.go()
        first = await _probes(stack, warmup)
        await f.until(first)
        sent = await _probes(stack, probes)
        await f.until(first + sent)
        await f.finish()
    # One worker records its probes as their functions start: the first ones sent first
    # (every warm-up probe ran before the next probes were sent).
    return f.probes[:first], f.probes[first:]


async def loaded(kind: str, count: int, probes: int) -> tuple[list[tuple[float, float]], float]:
    """Probes during a fan-out of `count` tasks; also returns the fan-out's rate."""
    async with database(kind) as url, running(url, name="latency") as stack:
        await stack.submit()
        async with fleet(stack, 1, throughput.SLOTS, creator=count) as f:
            f.go()
            start = time.perf_counter()
            # While the fan-out is not done (the workers' count includes the probes).
            sent = await _probes(stack, probes, lambda sent: f.completed < count + 1 + sent)
            await f.until(count + 1 + sent)
            seconds = time.perf_counter() - start
            await f.finish()
    if f.lost:
        raise RuntimeError(f"the worker gave up {f.lost} leases (not renewed in time)")
    return f.probes, (count + sent) / seconds


async def run(cfg: Config) -> list[Result]:
    probes = cfg.pick(PROBES, 10)
    count = cfg.pick(throughput.TASKS, 50)
    results: list[Result] = []
    for kind in ("sqlite", "postgres"):
        log(f"latency: {kind}, idle, {probes} probes at {RATE:g}/s")
        cold, quiet = await idle(kind, probes)
        log(f"latency: {kind}, probes at {RATE:g}/s during a fan-out of {count:,} tasks")
        busy, rate = await loaded(kind, count, probes)
        for label, values, note in (
            ("idle", quiet, f"{len(quiet)} probes, {RATE:g}/s, nothing else queued"),
            (
                "under load",
                busy,
                f"{len(busy)} probes, {RATE:g}/s, during a {count:,}-task fan-out job "
                f"(one worker, {rate:,.0f} tasks/s over the probing)",
            ),
        ):
            total = [v[0] for v in values]
            claim = [v[1] for v in values if v[1] >= 0]
            for q, name in ((0.5, "p50"), (0.99, "p99")):
                part = f"{1000 * percentile(claim, q):.1f} ms of it up to the claim"
                r = Result(
                    f"dispatch latency {kind}",
                    f"runnable -> function starts, {name}, {label}",
                    "ms",
                    1000 * percentile(total, q),
                    better="lower",
                    note=f"{note}; {part}" if q == 0.5 else f"{name}: {part}",
                )
                if label == "idle" and q == 0.99:
                    r.target = f"<= {TARGET_MS:g} ms"
                    if not cfg.smoke:
                        r.met = r.value <= TARGET_MS
                results.append(r)
        results.append(
            Result(
                f"dispatch latency {kind}",
                f"runnable -> function starts, worst of the first {len(cold)} after the start",
                "ms",
                1000 * max(v[0] for v in cold),
                better="lower",
                note="not counted in the idle rows: the start-up's first claims and runs",
            )
        )
    return results
