"""Before and after: the jobtask throughput cases of two checkouts, run alternately.

    python -m bench.paired OLD_CHECKOUT NEW_CHECKOUT [--tasks N] [--rounds R]
                           [--only sqlite:fanout,postgres:fanout]

Each checkout runs its own bench.throughput (with its own .venv) for each case -- SQLite and
PostgreSQL, fan-out job and one-task jobs, one worker; `sqlite:createjob` and
`postgres:createjob`, the one-task jobs submitted with one CreateJob call each (the unary
path's cost; not in the default set); and `bare:session`, the "no store" row
(one worker draining bench/bare.py's store-less WorkerSession server: the worker session's
own cost, not in the default set) -- old then new, case by case, so both
see the same machine at nearly the same time (what a loaded, shared machine needs for a fair
comparison). Prints one line per run and the new/old ratio per case.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

CASES = (("sqlite", "fanout"), ("sqlite", "jobs"), ("postgres", "fanout"), ("postgres", "jobs"))
EACH = (("sqlite", "createjob"), ("postgres", "createjob"))
BARE = ("bare", "session")
_RUN = """
import asyncio, json, sys
from bench import throughput as t
kind, case, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "bare":
    rate, note = asyncio.run(t.protocol_ceiling(n)), "no store"
else:
    if case == "fanout":
        rate, note = asyncio.run(t.jobtask_fanout(kind, n))
    else:
        batch = None if case == "createjob" else t.BATCH_JOBS
        rate, note = asyncio.run(t.jobtask_jobs(kind, n, batch=batch))
print(json.dumps({"rate": rate, "note": note}))
"""


def run(checkout: Path, kind: str, case: str, tasks: int) -> dict[str, object]:
    python = checkout / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", _RUN, kind, case, str(tasks)],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--only",
        default="",
        help="cases as store:case, comma-separated (default: the four stored ones; "
        "sqlite:createjob and postgres:createjob submit with a CreateJob call each; "
        "bare:session is the no-store row)",
    )
    args = parser.parse_args()
    cases: tuple[tuple[str, str], ...] = CASES
    if args.only:
        cases = tuple((c.split(":", 1)[0], c.split(":", 1)[-1]) for c in args.only.split(","))
        unknown = set(cases) - {*CASES, *EACH, BARE}
        if unknown:
            parser.error(f"unknown cases {sorted(unknown)}: choose from {(*CASES, *EACH, BARE)}")
    for round_ in range(args.rounds):
        for kind, case in cases:
            old = run(args.old, kind, case, args.tasks)
            new = run(args.new, kind, case, args.tasks)
            ratio = float(str(new["rate"])) / float(str(old["rate"]))
            for name, out in (("old", old), ("new", new)):
                rate = float(str(out["rate"]))
                print(f"{round_} {kind:8} {case:9} {name}: {rate:7.0f} tasks/s  ({out['note']})")
            print(f"{round_} {kind:8} {case:9} new/old: {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()
