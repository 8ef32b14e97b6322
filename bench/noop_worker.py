"""The throughput benchmark's worker: jobtask's own worker agent (jobtask.worker.Worker,
one WorkerSession) in its own process, running no-op tasks as in-process functions through
the public API (jobtask.worker.Functions), SLOTS at once.

    python -m bench.noop_worker JOBS_ADDR TASKS_ADDR TOKEN COUNT SLOTS [--creator CHILDREN]

Every job's script is "noop". With --creator, the job's first task creates CHILDREN tasks
with its own token (ctx.create_child_task, 16 in flight), as a crunch script's first task
queues its job's work, and then completes; COUNT includes it. Prints {"seconds": s,
"create_seconds": c, "completed": n} once COUNT tasks were decided Completed by the server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path

from jobtask.sdk.config import ClientConfig
from jobtask.v1 import job_task_pb2
from jobtask.worker import Functions, TaskContext, Worker, WorkerConfig

from bench.harness import announce

COMPLETED = job_task_pb2.TASK_STATUS_COMPLETED


def registry(children: int, created: asyncio.Event) -> Functions:
    functions = Functions()

    @functions.task("noop")
    async def noop(ctx: TaskContext) -> None:
        if children and not ctx.assignment.task.created_by_job_task_uuid:
            # The fan-out pattern's public API: BatchCreateTasks, 1,000 tasks a call.
            await ctx.create_child_tasks([None] * children)
            created.set()

    return functions


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("jobs_addr")
    parser.add_argument("tasks_addr")
    parser.add_argument("token")
    parser.add_argument("count", type=int)
    parser.add_argument("slots", type=int)
    parser.add_argument("--creator", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        config = WorkerConfig(
            client=ClientConfig(args.jobs_addr, args.tasks_addr, args.token),
            scripts_dir=Path(tmp),
            node_name="bench-node",
            worker_id="bench-noop-worker",
            slots=args.slots,
            cores=2,
            work_root=Path(tmp),
            # Which protocol the worker speaks: `stream` measures ClaimTask/RunTask.
            protocol=os.environ.get("JOBTASK_WORKER_PROTOCOL", "session"),
        )
        stop = asyncio.Event()
        created = asyncio.Event()
        counts = {"completed": 0, "other": 0}
        marks = {"created": 0.0}

        def decided(task: job_task_pb2.JobTask) -> None:
            counts["completed" if task.status == COMPLETED else "other"] += 1
            if counts["completed"] + counts["other"] >= args.count:
                stop.set()

        worker = Worker(config, registry(args.creator, created), on_decided=decided)
        start = time.perf_counter()

        async def note_created() -> None:
            await created.wait()
            marks["created"] = time.perf_counter() - start

        noting = asyncio.create_task(note_created())
        await worker.run(stop)
        seconds = time.perf_counter() - start
        noting.cancel()
        if counts["other"]:
            raise RuntimeError(f"{counts['other']} tasks did not complete")
    announce(seconds=seconds, create_seconds=marks["created"], completed=counts["completed"])


if __name__ == "__main__":
    asyncio.run(main())
