"""The throughput benchmark's worker: jobtask's own worker agent (jobtask.worker.Worker,
one WorkerSession) in its own process, running no-op tasks as in-process functions through
the public API (jobtask.worker.Functions), SLOTS at once.

    python -m bench.noop_worker JOBS_ADDR TASKS_ADDR TOKEN COUNT SLOTS [--creator CHILDREN]
    python -m bench.noop_worker JOBS_ADDR TASKS_ADDR TOKEN 0 SLOTS --coordinated [--id I]

Every job's script is "noop" or "probe". With --creator, a job's first task creates
CHILDREN tasks with its own token (ctx.create_child_tasks: BatchCreateTasks), as a crunch
script's first task queues its job's work, and then completes. A "probe" task records its
dispatch latency when it starts: time.time() minus its task's created_at (when it became
runnable: a one-task job's task is created with its job), and the part of it up to the
claim (its started_at, stamped by the server as it claimed the task).

Counted (the default): runs until COUNT tasks were decided by the server (COUNT includes
the creating task) and prints {"seconds": s, "create_seconds": c, "completed": n, "cpu": u,
...} (u: the CPU seconds this process used meanwhile).

Coordinated (--coordinated, for several worker processes sharing one queue): prints
{"ready": true} once set up, starts on the first line read from its standard input, then
prints {"completed": n, "other": o, "lost": l, "last": t} whenever its count grew (at most
every 20 ms; t = wall time of its last decision; "lost": tasks whose lease it gave up on,
see LostLeases), until its standard input closes; then a last line {"done": true,
"started": t0, "created": tc, "completed": n, "lost": l, "probes": [[s, c], ...]}, wall times
(time.time()), so the parent can add up several workers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from jobtask.collector import freeze_startup_heap
from jobtask.event_loop import run
from jobtask.sdk.config import ClientConfig
from jobtask.v1 import job_task_pb2
from jobtask.worker import Functions, TaskContext, Worker, WorkerConfig

from bench.harness import announce, own_cpu_seconds

COMPLETED = job_task_pb2.TASK_STATUS_COMPLETED
PROGRESS_EVERY = 0.02


class LostLeases(logging.Handler):
    """The tasks this worker gave up on because their lease was lost or not renewed in
    time (jobtask.worker.runner says so in its log; the task may still have been decided
    by the server, but the worker never heard): counted, so a run cannot wait for them
    forever, and shown, so its figure is not taken for a clean one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.tasks: set[str] = set()
        self.last = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        text = str(record.msg)
        if ("lease lost" in text or "the lease is gone" in text) and record.args:
            self.tasks.add(str(record.args[0]))  # type: ignore[index]
            self.last = time.time()


def registry(children: int, created: asyncio.Event, probes: list[tuple[float, float]]) -> Functions:
    functions = Functions()

    @functions.task("noop")
    async def noop(ctx: TaskContext) -> None:
        if children and not ctx.assignment.task.created_by_job_task_uuid:
            # The fan-out pattern's public API: BatchCreateTasks, 1,000 tasks a call; the
            # children's uuids back, all a creator that does not read them needs.
            await ctx.create_child_tasks([None] * children, select=["uuid"])
            created.set()

    @functions.task("probe")
    async def probe(ctx: TaskContext) -> None:
        started = time.time()
        task = ctx.assignment.task
        created = task.created_at.seconds + task.created_at.nanos / 1e9
        # The claim's own stamp splits the figure: the server's part, then the delivery.
        claimed = task.started_at.seconds + task.started_at.nanos / 1e9
        probes.append((started - created, claimed - created if claimed else -1.0))

    return functions


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("jobs_addr")
    parser.add_argument("tasks_addr")
    parser.add_argument("token")
    parser.add_argument("count", type=int)
    parser.add_argument("slots", type=int)
    parser.add_argument("--creator", type=int, default=0)
    parser.add_argument("--coordinated", action="store_true")
    parser.add_argument("--id", default="0")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    lost = LostLeases()
    logging.getLogger("jobtask.worker.runner").addHandler(lost)
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        config = WorkerConfig(
            client=ClientConfig(args.jobs_addr, args.tasks_addr, args.token),
            scripts_dir=Path(tmp),
            node_name=f"bench-node-{args.id}",
            worker_id=f"bench-noop-worker-{args.id}",
            slots=args.slots,
            cores=2,
            work_root=Path(tmp),
            # Which protocol the worker speaks: `stream` measures ClaimTask/RunTask.
            protocol=os.environ.get("JOBTASK_WORKER_PROTOCOL", "session"),
        )
        stop = asyncio.Event()
        created = asyncio.Event()
        probes: list[tuple[float, float]] = []
        counts = {"completed": 0, "other": 0}
        marks = {"created": 0.0, "last": 0.0}

        def decided(task: job_task_pb2.JobTask) -> None:
            counts["completed" if task.status == COMPLETED else "other"] += 1
            marks["last"] = time.time()
            if not args.coordinated and counts["completed"] + counts["other"] >= args.count:
                stop.set()

        # (decided reads the status only: the server sends no more of each decided task.)
        worker = Worker(
            config,
            registry(args.creator, created, probes),
            on_decided=decided,
            decided_select=["status"],
        )
        freeze_startup_heap()  # as `jobtask worker` does
        if args.coordinated:
            announce(ready=True)
            await asyncio.to_thread(sys.stdin.readline)
        started = time.time()
        start = time.perf_counter()
        cpu = own_cpu_seconds()

        async def note_created() -> None:
            await created.wait()
            marks["created"] = time.time()

        async def progress() -> None:
            # Coordinated: the parent adds up the workers' counts and closes our stdin.
            told = 0
            closed = asyncio.create_task(asyncio.to_thread(sys.stdin.read))
            while not closed.done():
                n = counts["completed"] + counts["other"] + len(lost.tasks)
                if n != told:
                    told = n
                    last = max(marks["last"], lost.last)
                    announce(**counts, lost=len(lost.tasks), last=last)
                await asyncio.wait({closed}, timeout=PROGRESS_EVERY)
            stop.set()

        side = [asyncio.create_task(note_created())]
        if args.coordinated:
            side.append(asyncio.create_task(progress()))
        await worker.run(stop)
        seconds = time.perf_counter() - start
        cpu = own_cpu_seconds() - cpu
        for t in side:
            t.cancel()
        if counts["other"]:
            raise RuntimeError(f"{counts['other']} tasks did not complete")
    created_seconds = marks["created"] - started if marks["created"] else 0.0
    announce(
        done=True,
        seconds=seconds,
        cpu=cpu,
        started=started,
        created=marks["created"],
        create_seconds=created_seconds,
        completed=counts["completed"],
        lost=len(lost.tasks),
        probes=probes,
    )


if __name__ == "__main__":
    run(main())
