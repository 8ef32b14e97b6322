"""One-task jobs' claims and completions alone on SQLite, in this process: the managers as
the server runs them (ClaimManager.claim, ReportManager.apply_many), with no gRPC, no
worker and no protobuf.

    python -m bench.jobs_cycle [JOBS] [--skip]

JOBS one-task jobs are submitted (BatchCreateJobs' manager call, 100 a call), then claimed
100 at a time and each claim's tasks completed in one group commit -- the sizes the
`jobtask_jobs` case runs at (one worker of 100 slots). Prints the CPU seconds a job of the
claims and of the completions. The CPU figure moves with a shared machine's load; the
instruction count does not: run it under callgrind twice, with and without --skip (which
submits the jobs and claims none), and divide the difference by JOBS:

    valgrind --tool=callgrind python -m bench.jobs_cycle 500 [--skip]
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from jobtask.collector import freeze_startup_heap
from jobtask.domain.reports import Batch, Report
from jobtask.manager.context import Settings, WorkerSpec
from jobtask.manager.reports import Submission
from jobtask.server.app import Core

CLAIM = 100


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _done() -> Batch:
    batch = Batch()
    batch.add(Report(seq=1, progress=1.0, success=True, output="", exit_code=0))
    return batch


async def cycle(
    url: str, jobs: int, *, skip: bool, drained: Callable[[], None] | None = None
) -> str:
    """The claims and completions of `jobs` one-task jobs, after their submission;
    `drained` is called between the two (bench.jobs_statements: the drain's statements)."""
    core = await Core.open(url, Settings())
    system = core.settings.system_caller()
    freeze_startup_heap()  # as the server does once it serves (bench.server)
    for start in range(0, jobs, CLAIM):
        await core.jobs.create_many(system, [({"script": "noop"}, True)] * min(CLAIM, jobs - start))
    worker = WorkerSpec(worker_id="w1", node_name="node1", free_slots=CLAIM, slots=CLAIM, cores=2)
    if drained is not None:
        drained()
    claiming = completing = 0.0
    done = 0
    while not skip and done < jobs:
        before = _cpu()
        claims = await core.claims.claim(system, worker, CLAIM)
        claimed = _cpu()
        if not claims:
            break
        items = [Submission(system, c.task.uuid, c.lease_id, _done()) for c in claims]
        await core.runs.reports.apply_many(items)
        completing += _cpu() - claimed
        claiming += claimed - before
        done += len(claims)
    per = 1e6 / max(done, 1)
    return (
        f"{done} jobs: server µs a job: claim {claiming * per:.1f}, "
        f"complete {completing * per:.1f}, both {(claiming + completing) * per:.1f}"
    )


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--skip"]
    jobs = int(args[0]) if args else 4000
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'jobtask.sqlite3'}"
        print(asyncio.run(cycle(url, jobs, skip="--skip" in sys.argv)))


if __name__ == "__main__":
    main()
