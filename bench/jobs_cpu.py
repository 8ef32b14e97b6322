"""The server's CPU per one-task job, submission and drain apart: the `jobtask_jobs` case of
bench.throughput (BatchCreateJobs of BATCH_JOBS a call, BATCH_IN_FLIGHT in flight, then one
worker of SLOTS slots drains them), with the server process's CPU seconds read before the
submission, between the two and after the drain.

    python -m bench.jobs_cpu sqlite|postgres [JOBS]

Prints one line: the case's rate, the submit and drain rates, and µs of server CPU a job in
each phase (and the worker's in the drain). Steadier than the rates on a shared machine:
alternate two checkouts' runs to compare them. With JOBTASK_BENCH_PROFILE_DIR set, the
server is also recorded by py-spy (bench.profile)."""

from __future__ import annotations

import asyncio
import sys
import time

from bench.fleet import fleet
from bench.stack import database, running
from bench.throughput import BATCH_IN_FLIGHT, BATCH_JOBS, SLOTS


async def measure(kind: str, count: int) -> str:
    async with database(kind) as url, running(url) as stack, fleet(stack, 1, SLOTS) as f:
        before = stack.server.cpu_seconds()
        start = time.perf_counter()
        await stack.submit_in_batches(count, BATCH_JOBS, BATCH_IN_FLIGHT)
        submit = time.perf_counter() - start
        submitted = stack.server.cpu_seconds()
        worker = sum(p.cpu_seconds() for p in f.procs)
        f.go()
        seconds = await f.until(count)
        drained = stack.server.cpu_seconds()
        worker = sum(p.cpu_seconds() for p in f.procs) - worker
        await f.finish()
    us = 1e6 / count
    return (
        f"{kind}: {count / (submit + seconds):,.0f} jobs/s (submit {count / submit:,.0f}/s, "
        f"drain {count / seconds:,.0f}/s); server µs a job: submit "
        f"{(submitted - before) * us:.0f}, drain {(drained - submitted) * us:.0f}; "
        f"worker {worker * us:.0f}"
    )


if __name__ == "__main__":
    print(asyncio.run(measure(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4000)))
