"""5. Memory: resident memory of a TaskService holding 1,000 open RunTask streams and
10,000 queued tasks.

What is measured: the server process (JobService and TaskService in one process, as
`jobtask up` runs them, on SQLite) after: one job whose first task created 1,000 tasks of
sequence 1 and 10,000 of sequence 2 (queued: gated behind sequence 1) and completed; the
1,000 claimed (ClaimTask, 100 at a time); one RunTask stream opened per claimed task (the
opening message and one progress update each, acknowledged) and held open. VmRSS is read
from /proc; the figure is compared with the 300 MiB target and the server's RSS when idle.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jobtask.v1.task_service_pb2 import RunTaskRequest

from bench.harness import Config, Result, log
from bench.stack import database, running


async def _hold(
    stack: Any, stub: Any, a: Any, opened: asyncio.Event, release: asyncio.Event
) -> None:
    call = stub.RunTask(metadata=stack.md)
    await call.write(RunTaskRequest(task_uuid=a.task.uuid, lease_id=a.lease.lease_id))
    await call.write(RunTaskRequest(seq=1, progress=0.5))
    async for response in call:
        if response.acked_seq >= 1:
            break
    opened.set()
    await release.wait()
    await call.write(RunTaskRequest(seq=2, progress=1.0, success=True, exit_code=0))
    await call.done_writing()
    async for _ in call:
        pass


async def run(cfg: Config) -> list[Result]:
    streams = cfg.pick(1000, 20)
    queued = cfg.pick(10_000, 100)
    async with database("sqlite") as url, running(url, lease_ttl=600, name="memory") as stack:
        idle = stack.server.rss_mib()
        log(f"memory: creating {streams:,} + {queued:,} tasks")
        await stack.fanned_out_job([streams, queued])
        claimed: list[Any] = []
        while len(claimed) < streams:
            claimed += await stack.claim(min(100, streams - len(claimed)))
        log(f"memory: opening {streams:,} RunTask streams")
        release = asyncio.Event()
        opened = [asyncio.Event() for _ in claimed]
        stubs = [stack.task_stub() for _ in range(4)]
        holders = [
            asyncio.create_task(_hold(stack, stubs[i % 4], a, opened[i], release))
            for i, a in enumerate(claimed)
        ]
        await asyncio.gather(*(o.wait() for o in opened))
        await asyncio.sleep(1.0)
        rss = stack.server.rss_mib()
        release.set()
        await asyncio.gather(*holders)
    r = Result(
        "memory",
        f"RSS, {streams:,} RunTask streams + {queued:,} queued",
        "MiB",
        rss,
        "idle server",
        idle,
        better="lower",
        target="<= 300 MiB",
    )
    if not cfg.smoke:
        r.met = rss <= 300
    return [r]
