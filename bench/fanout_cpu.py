"""CPU a task by process for the fan-out case (bench.throughput.jobtask_fanout: one job of N
tasks, one worker of 100 slots) and for PgQueuer, the figures bench.ceiling's part 3 takes
from a whole ceiling run, for one case at a time.

    python -m bench.fanout_cpu sqlite,postgres,pgqueuer10 [TASKS]

Prints one line a case: its rate and note, and µs of CPU a task by role (bench.throughput's
Meter: the server, the worker, PostgreSQL's backends serving the run's database, this
process). With JOBTASK_BENCH_PROFILE_DIR set, the servers are also recorded by py-spy.
"""

from __future__ import annotations

import asyncio
import sys

from bench import throughput

CASES = ("sqlite", "postgres", "pgqueuer10", "pgqueuer100")


async def one(case: str, tasks: int) -> str:
    if case not in CASES:
        raise SystemExit(f"case {case!r}: not one of {', '.join(CASES)}")
    seen = throughput.Observed()
    if case.startswith("pgqueuer"):
        count = throughput.PGQUEUER_JOBS
        rate, note = await throughput.pgqueuer(count, int(case.removeprefix("pgqueuer")), seen)
    else:
        count = tasks
        rate, note = await throughput.jobtask_fanout(case, tasks, 1, seen)
    per = ", ".join(f"{role} {s / count * 1e6:,.0f}" for role, s in seen.cpu.items())
    return f"{case}: {rate:,.0f} tasks/s ({note}); CPU µs a task: {per}"


async def main(cases: list[str], tasks: int) -> None:
    for case in cases:
        print(await one(case, tasks), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].split(","), int(sys.argv[2]) if len(sys.argv) > 2 else 5000))
