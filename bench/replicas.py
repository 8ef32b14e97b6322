"""PostgreSQL with server replicas: does a second server process on the same database drain
faster on this machine? The server is one process on one core (bench/README.md, "the server's
CPU a task sets the pace"), so a replica is the deployment's own way to give it a second.

    python -m bench.replicas [--case fanout|jobs] [--tasks N] [--rounds R] [--replicas K]

Each round runs the case twice, alternated (bench.versus.alternated: K servers first in
rounds 0, 2, ...), on a fresh database each: K servers (replicas on the same database) with
one worker process each, and ONE server with the same K worker processes. The workers are
bench.noop_worker's, SLOTS slots each, as in bench.throughput. Cases: `fanout` (one job
whose first task creates N tasks, through the first replica;
bench.throughput.jobtask_fanout's shape) and `jobs` (N one-task jobs, submitted through the
first replica before the clock starts). Prints each run's rate and CPU a task by role, and
the median of the rounds' ratios (K servers / one).

Not a target's figure: the issue's comparisons (bench.versus) run one server. On 2 cores a
second server competes with PostgreSQL and the workers for the same two cores, and every
claim and report group of a fan-out locks the same job row, whichever replica sends it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from collections.abc import AsyncIterator
from typing import Any

from bench.fleet import fleet
from bench.stack import Stack, database, running
from bench.throughput import BATCH_IN_FLIGHT, BATCH_JOBS, SLOTS, Meter
from bench.versus import alternated


@contextlib.asynccontextmanager
async def servers(url: str, n: int) -> AsyncIterator[list[Stack]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(running(url, name=f"server{i}")) for i in range(n)]


async def one(case: str, tasks: int, n_servers: int, n_workers: int) -> tuple[float, str]:
    """Rate (tasks/s from the workers' start to the last decision), and a note: how many
    tasks each worker decided, and CPU a task by role."""
    async with database("postgres") as url, servers(url, n_servers) as stacks:
        first = stacks[0]
        if case == "fanout":
            await first.submit()
            target, creator = tasks + 1, tasks
        else:
            await first.submit_in_batches(tasks, BATCH_JOBS, BATCH_IN_FLIGHT)
            target, creator = tasks, 0
        async with fleet(first, n_workers, SLOTS, creator=creator, replicas=stacks) as f:
            meter = Meter(url, {"server": [s.server for s in stacks], "worker": f.procs})
            meter.start()
            f.go()
            seconds = await f.until(target)
            cpu = meter.stop()
            await f.finish()
    per = ", ".join(f"{role} {s / tasks * 1e6:,.0f}" for role, s in cpu.items())
    split = " / ".join(f"{n:,}" for n in f.counts)
    return tasks / seconds, f"decided by each worker {split}; CPU µs a task: {per}"


async def main(case: str, tasks: int, rounds: int, k: int) -> None:
    ratios = await alternated(
        (f"{k} servers, {k} workers", lambda: one(case, tasks, k, k)),
        (f"one server, {k} workers", lambda: one(case, tasks, 1, k)),
        rounds,
    )
    shown = ", ".join(f"{x:.2f}" for x in ratios)
    print(f"{case}, {k} servers / one: rounds {shown}; median {statistics.median(ratios):.2f}x")


def _args(argv: Any = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("fanout", "jobs"), default="fanout")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=2)
    return parser.parse_args(argv)


if __name__ == "__main__":
    a = _args()
    asyncio.run(main(a.case, a.tasks, a.rounds, a.replicas))
