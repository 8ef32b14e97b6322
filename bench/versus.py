"""A jobtask throughput case against its peer, run in turns over several rounds.

    python -m bench.versus CASE PEER [--tasks N] [--rounds R]

CASE is one of bench.throughput's jobtask cases (`sqlite:jobs`, `sqlite:fanout`,
`postgres:jobs`, `postgres:fanout`; one worker; `bare:session`, the "no store" row), PEER
one of its peers (`huey`, `procrastinate`, `pgqueuer10`, `pgqueuer100`). Each round runs
both, one after the other, the one run first taking turns (jobtask first in rounds 0, 2,
...); each prints its rate and note, then the round's ratio jobtask/peer. At the end:
every round's ratio, their median and their least. `python -m bench --only throughput`
measures each figure once, and Huey's own rate moves by +-15 % from one run to the next
on this machine: one run cannot tell a case at 1.05x from one at 0.95x. Rounds taken in
turns can, when their spread is smaller than the margin (bench/README.md says how the
issue's lines are read from them).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Awaitable, Callable

from bench import throughput

Run = Callable[[int], Awaitable[tuple[float, str]]]

CASES: dict[str, Run] = {
    "sqlite:jobs": lambda n: throughput.jobtask_jobs("sqlite", n),
    "sqlite:fanout": lambda n: throughput.jobtask_fanout("sqlite", n),
    "postgres:jobs": lambda n: throughput.jobtask_jobs("postgres", n),
    "postgres:fanout": lambda n: throughput.jobtask_fanout("postgres", n),
    "bare:session": lambda n: _bare(n),
}


async def _bare(count: int) -> tuple[float, str]:
    """The "no store" row: one worker draining bench/bare.py's store-less session."""
    return await throughput.protocol_ceiling(count), "no store"


# PgQueuer drains the 10,000 jobs whatever --tasks says, as in bench.throughput.
PEERS: dict[str, Run] = {
    "huey": throughput.huey,
    "procrastinate": throughput.procrastinate,
    "pgqueuer10": lambda n: throughput.pgqueuer(throughput.PGQUEUER_JOBS, 10),
    "pgqueuer100": lambda n: throughput.pgqueuer(throughput.PGQUEUER_JOBS, 100),
}


# A side of a comparison: its label, and what runs it once (its rate and a note).
Side = tuple[str, Callable[[], Awaitable[tuple[float, str]]]]


async def alternated(top: Side, bottom: Side, count: int) -> list[float]:
    """`count` rounds, each running both sides one after the other (the one run first
    taking turns: `top` in rounds 0, 2, ...), printing each run and the round's ratio
    top/bottom; the ratios."""
    width = max(len(top[0]), len(bottom[0]))
    ratios = []
    for round_ in range(count):
        rates = {}
        for label, run in (top, bottom) if round_ % 2 == 0 else (bottom, top):
            rate, note = await run()
            rates[label] = rate
            print(f"{round_} {label:{width}} {rate:8,.0f} tasks/s  ({note})", flush=True)
        ratios.append(rates[top[0]] / rates[bottom[0]])
        print(f"{round_} ratio {ratios[-1]:.2f}x", flush=True)
    return ratios


async def rounds(case: str, peer: str, tasks: int, count: int) -> list[float]:
    return await alternated(
        (f"jobtask {case}", lambda: CASES[case](tasks)),
        (peer, lambda: PEERS[peer](tasks)),
        count,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    if args.rounds < 1 or args.tasks < 1:
        parser.error("--rounds and --tasks must be at least 1")
    ratios = asyncio.run(rounds(args.case, args.peer, args.tasks, args.rounds))
    listed = ", ".join(f"{r:.2f}" for r in ratios)
    print(
        f"{args.case} / {args.peer}: rounds {listed}; "
        f"median {statistics.median(ratios):.2f}x, least {min(ratios):.2f}x"
    )


if __name__ == "__main__":
    main()
