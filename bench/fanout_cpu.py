"""CPU a task by process for the fan-out case (bench.throughput.jobtask_fanout: one job of N
tasks, one worker of 100 slots) and for PgQueuer, the figures bench.ceiling's part 3 takes
from a whole ceiling run, for one case at a time.

    python -m bench.fanout_cpu sqlite,postgres,pgqueuer10 [TASKS] [--jobs 1,2,4]

Prints one line a case: its rate and note, and µs of CPU a task by role (bench.throughput's
Meter: the server, the worker, PostgreSQL's backends serving the run's database, this
process). With JOBTASK_BENCH_PROFILE_DIR set, the servers are also recorded by py-spy.
`--jobs`: the jobtask cases again with the TASKS split over that many fan-out jobs, drained
together: whether one job's row, which all of its claims and report groups lock, is what
bounds the rate (it is not if more jobs drain no faster).
"""

from __future__ import annotations

import argparse
import asyncio

from bench import throughput

CASES = ("sqlite", "postgres", "pgqueuer10", "pgqueuer100")


async def one(case: str, tasks: int, jobs: int = 1) -> str:
    if case not in CASES:
        raise SystemExit(f"case {case!r}: not one of {', '.join(CASES)}")
    seen = throughput.Observed()
    if case.startswith("pgqueuer"):
        count = throughput.PGQUEUER_JOBS
        rate, note = await throughput.pgqueuer(count, int(case.removeprefix("pgqueuer")), seen)
    else:
        count = tasks
        rate, note = await throughput.jobtask_fanout(case, tasks, 1, seen, jobs=jobs)
    per = ", ".join(f"{role} {s / count * 1e6:,.0f}" for role, s in seen.cpu.items())
    shown = f"{case} ({jobs} jobs)" if jobs > 1 else case
    return f"{shown}: {rate:,.0f} tasks/s ({note}); CPU µs a task: {per}"


async def main(cases: list[str], tasks: int, jobs: list[int]) -> None:
    for case in cases:
        for n in jobs if not case.startswith("pgqueuer") else [1]:
            print(await one(case, tasks, n), flush=True)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_cpu")
    parser.add_argument("cases", help=f"comma-separated: {', '.join(CASES)}")
    parser.add_argument("tasks", nargs="?", type=int, default=5000)
    parser.add_argument("--jobs", default="1", help="comma-separated job counts (default 1)")
    args = parser.parse_args()
    jobs = [int(n) for n in args.jobs.split(",")]
    if any(n < 1 or args.tasks % n for n in jobs):
        parser.error(f"--jobs: each count must be at least 1 and divide {args.tasks}")
    asyncio.run(main(args.cases.split(","), args.tasks, jobs))


if __name__ == "__main__":
    cli()
