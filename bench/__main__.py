"""Runs the benchmark suite and prints the table: `python -m bench` (or `make bench`).

python -m bench                       # the whole suite (8 minutes on 2 cores before the
                                      # 4-worker runs and latency: more now, not yet timed)
python -m bench --smoke               # every benchmark, tiny sizes, no targets (CI)
python -m bench --only unary,ingest   # some of them
python -m bench --repeat 1            # one run each instead of the median of 3
python -m bench --tasks 1000          # throughput task count (default 10,000)
python -m bench --workers 1,4         # throughput: worker process counts (default 1,4)
python -m bench --big                 # also the 100,000-task fan-out (JOBTASK_BENCH_BIG=1)
python -m bench --only fairshare      # the optional fair-share row (--fairshare-tasks/-jobs)
python -m bench --only ceiling        # the measured ceilings (gRPC floor, database alone, CPU)
python -m bench --only floor          # the optional database-alone floor (pgbench, bench/floor.py)
python -m bench --profile DIR         # py-spy profiles of every jobtask server
python -m bench --json FILE           # the results as JSON too
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from bench import (
    ceiling,
    dashboard,
    fairshare,
    fanout,
    floor,
    ingest,
    latency,
    memory,
    throughput,
    unary,
)
from bench.harness import Config, Result, results_json, table
from bench.profile import PROFILE_DIR_ENV, summary

BENCHMARKS = {
    "throughput": throughput.run,
    "latency": latency.run,
    "ingest": ingest.run,
    "fanout": fanout.run,
    "unary": unary.run,
    "memory": memory.run,
    "dashboard": dashboard.run,
    "ceiling": ceiling.run,
}
# Run only when named in --only (kept out of the default suite and of CI's smoke run).
OPTIONAL = {"fairshare": fairshare.run, "floor": floor.run}


def versions() -> str:
    names = [
        "grpcio",
        "protobuf",
        "sqlalchemy",
        "asyncpg",
        "uvloop",
        "huey",
        "procrastinate",
        "pgqueuer",
    ]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} -")
    return f"Python {platform.python_version()}, " + ", ".join(found)


async def run(names: list[str], cfg: Config) -> list[Result]:
    results: list[Result] = []
    for name in names:
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        results.extend(await {**BENCHMARKS, **OPTIONAL}[name](cfg))
        print(f"   ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, no targets")
    parser.add_argument(
        "--only",
        help=f"comma-separated subset of {','.join(BENCHMARKS)}, or the optional "
        f"{','.join(OPTIONAL)}",
    )
    parser.add_argument("--fairshare-tasks", type=int, help="fairshare: owner a's fan-out")
    parser.add_argument("--fairshare-jobs", type=int, help="fairshare: owner b's jobs")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--tasks", type=int, help="throughput: tasks per system")
    parser.add_argument(
        "--workers", help="throughput: worker process counts, comma-separated (default 1,4)"
    )
    parser.add_argument(
        "--big",
        action="store_true",
        help="throughput: also the 100,000-task fan-out on both stores (JOBTASK_BENCH_BIG=1)",
    )
    parser.add_argument("--profile", help="record py-spy profiles of the servers here")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS) - set(OPTIONAL)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    if args.profile:
        os.environ[PROFILE_DIR_ENV] = os.path.abspath(args.profile)
    if args.tasks:
        throughput.TASKS = args.tasks
    if args.workers:
        throughput.WORKERS = tuple(int(n) for n in args.workers.split(","))
    if args.big:
        throughput.BIG = True
    if args.fairshare_tasks:
        fairshare.TASKS = args.fairshare_tasks
    if args.fairshare_jobs:
        fairshare.JOBS = args.fairshare_jobs
    cfg = Config(smoke=args.smoke, repeat=args.repeat)
    started = time.perf_counter()
    results = asyncio.run(run(names, cfg))
    elapsed = time.perf_counter() - started
    print()
    print(f"jobtask benchmarks, {dt.date.today()}, {os.cpu_count()} cores, {versions()}")
    print(f"{'smoke run' if cfg.smoke else f'median of {cfg.runs}'}; took {elapsed:.0f} s")
    print()
    print(table(results))
    notes = [f"- {r.bench}, {r.metric}: {r.note}" for r in results if r.note]
    if notes:
        print()
        print("\n".join(notes))
    if args.json:
        with open(args.json, "w") as f:
            f.write(results_json(results))
    if args.profile:
        for path in sorted(os.scandir(args.profile), key=lambda e: e.name):
            if path.name.endswith(".txt"):
                print()
                print(summary(Path(path.path), 15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
