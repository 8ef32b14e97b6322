"""Before and after: the jobtask throughput cases of two checkouts, run alternately.

    python -m bench.paired OLD_CHECKOUT NEW_CHECKOUT [--tasks N] [--rounds R]
                           [--only sqlite:fanout,postgres:fanout]

Each checkout runs its own bench.throughput (with its own .venv) for each case -- SQLite and
PostgreSQL, fan-out job and one-task jobs, one worker; `sqlite:createjob` and
`postgres:createjob`, the one-task jobs submitted with one CreateJob call each (the unary
path's cost; not in the default set); and `bare:session`, the "no store" row
(one worker draining bench/bare.py's store-less WorkerSession server: the worker session's
own cost, not in the default set) -- the two one after the other, case by case, so both
see the same machine at nearly the same time (what a loaded, shared machine needs for a fair
comparison). Which runs first alternates by round (old first in rounds 0, 2, ...; new first
in 1, 3, ...): the checkout run first was seen to win by 3-5 % on SQLite whichever it was
(bench/README.md, the sixteenth session's merges), so give an even --rounds for verdicts that
small. Prints one line per run, in the order run, and the new/old ratio per case.
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


def order(round_: int) -> tuple[str, str]:
    """Which checkout runs first in a round, and which second: they take turns."""
    return ("old", "new") if round_ % 2 == 0 else ("new", "old")


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
    checkouts = {"old": args.old, "new": args.new}
    for round_ in range(args.rounds):
        for kind, case in cases:
            runs = {name: run(checkouts[name], kind, case, args.tasks) for name in order(round_)}
            old, new = runs["old"], runs["new"]
            ratio = float(str(new["rate"])) / float(str(old["rate"]))
            for name, out in runs.items():
                rate = float(str(out["rate"]))
                print(f"{round_} {kind:8} {case:9} {name}: {rate:7.0f} tasks/s  ({out['note']})")
            print(f"{round_} {kind:8} {case:9} new/old: {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()
