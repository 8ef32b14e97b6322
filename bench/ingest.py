"""2. Progress ingest: 16 workers stream progress as fast as they can; updates accepted per
second, against a bare grpc.aio client-streaming server in the same run; then the final
progress and status in the database are checked exact.

What is measured: 16 RunTask streams (one per claimed task, one channel, this process; the
server is a child process on SQLite), each writing COUNT progress messages back to back
(`await call.write`, so gRPC flow control paces the writer), the last with progress
0.5 + 0.25 * stream / 16 (a distinct value per task). A stream's time ends when the server
acknowledges the last seq (acked_seq: durable). Rate = all messages / the slowest stream's
time. Then each task's progress is read with GetTask and must equal the last value sent;
an exit message follows (progress 1.0, success, exit 0) and every task must be Completed.
The ceiling: the same 16 writers against a bare stream-stream handler that counts messages
and acks the last seq when the client closes its side.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jobtask.v1 import job_task_pb2, task_service_pb2
from jobtask.v1.task_service_pb2 import RunTaskRequest

from bench.bare import stubs
from bench.harness import Config, Result, log, median
from bench.stack import bare_server, database, running

STREAMS = 16


def final_progress(i: int) -> float:
    return 0.5 + 0.25 * i / STREAMS


async def _write_all(call: Any, first: RunTaskRequest | None, count: int, last: float) -> int:
    seq = 0
    if first is not None:
        await call.write(first)
    for k in range(count - 1):
        seq += 1
        await call.write(RunTaskRequest(seq=seq, progress=0.4 * k / count))
    seq += 1
    await call.write(RunTaskRequest(seq=seq, progress=last))
    return seq


async def jobtask_stream(stack: Any, stub: Any, a: Any, i: int, count: int) -> float:
    """Seconds until the last of `count` updates is acked; then the exit."""
    call = stub.RunTask(metadata=stack.md)
    hello = RunTaskRequest(task_uuid=a.task.uuid, lease_id=a.lease.lease_id)
    acked = 0
    last_seq = -1
    got_last = asyncio.Event()

    async def reader() -> None:
        nonlocal acked
        async for response in call:
            acked = max(acked, response.acked_seq)
            if acked >= last_seq > 0:
                got_last.set()

    start = time.perf_counter()
    read = asyncio.create_task(reader())
    last_seq = await _write_all(call, hello, count, final_progress(i))
    if acked >= last_seq:
        got_last.set()
    await got_last.wait()
    seconds = time.perf_counter() - start
    await call.write(RunTaskRequest(seq=last_seq + 1, exit_code=0, progress=1.0, success=True))
    await call.done_writing()
    await read
    return seconds


async def bare_stream(ingest: Any, i: int, count: int) -> float:
    call = ingest()
    start = time.perf_counter()
    last = await _write_all(call, None, count, final_progress(i))
    await call.done_writing()
    async for response in call:
        if response.acked_seq != last:
            raise RuntimeError("the bare server lost messages")
    return time.perf_counter() - start


async def run(cfg: Config) -> list[Result]:
    count = cfg.pick(10_000, 200)
    ours: list[float] = []
    bare: list[float] = []
    exact = True
    async with database("sqlite") as url, running(url, name="ingest") as stack:
        job = await stack.submit()
        async with bare_server(job) as (_, bare_channel):
            ingest = stubs(bare_channel)["ingest"]
            for run_no in range(cfg.runs):
                log(f"ingest run {run_no + 1}/{cfg.runs}: {STREAMS} streams x {count:,} updates")
                times = await asyncio.gather(
                    *(bare_stream(ingest, i, count) for i in range(STREAMS))
                )
                bare.append(STREAMS * count / max(times))
                await stack.fanned_out_job([STREAMS])
                assignments = await stack.claim(STREAMS)
                assert len(assignments) == STREAMS, len(assignments)
                stub = stack.task_stub()
                times = await asyncio.gather(
                    *(jobtask_stream(stack, stub, a, i, count) for i, a in enumerate(assignments))
                )
                ours.append(STREAMS * count / max(times))
                exact = exact and await _check(stack, assignments)
    r = Result(
        "progress ingest",
        f"{STREAMS} streams x {count:,} updates",
        "updates/s",
        median(ours),
        "bare client-streaming",
        median(bare),
        target=">= 0.8x",
        note="nothing lost: every task's last progress event and final status exact"
        if exact
        else "MISMATCH in the database",
        runs=ours,
    )
    if not exact:
        raise RuntimeError("progress ingest: the database does not hold what was sent")
    if not cfg.smoke and r.ratio is not None:
        r.met = r.ratio >= 0.8 and exact
    return [r]


async def _check(stack: Any, assignments: Any) -> bool:
    """Progress and status as sent: the last progress before the exit, then Completed.
    (After the exit the task's progress is 1.0, so the last update is checked in the
    attempt's events: the task_progress event before its completion.)"""
    ok = True
    for i, a in enumerate(assignments):
        task = await stack.tasks.GetTask(
            task_service_pb2.GetTaskRequest(uuid=a.task.uuid), metadata=stack.md
        )
        ok = ok and task.status == job_task_pb2.TASK_STATUS_COMPLETED and task.progress == 1.0
        watch = stack.tasks.WatchTasks(
            task_service_pb2.WatchTasksRequest(
                job_uuid=a.task.job_uuid, task_uuid=a.task.uuid, after_seq=0
            ),
            metadata=stack.md,
        )
        progress = []
        async for event in watch:
            if event.type == 5:  # WATCH_EVENT_TYPE_TASK_PROGRESS
                progress.append(event.progress)
            if event.task.status == job_task_pb2.TASK_STATUS_COMPLETED:
                break
        watch.cancel()
        ok = ok and bool(progress) and progress[-1] == final_progress(i)
    return ok
