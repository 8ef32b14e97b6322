"""6. Fair share (optional: `--only fairshare`; not in the default suite): how long a small
owner's one-task jobs wait behind another owner's fan-out at the same priority.

Owner a submits one job and fans it out to TASKS tasks (its seed task plus TASKS - 1
CreateTask calls with a's own token, 16 in flight); one second after a's job was submitted,
owner b submits JOBS one-task jobs. One no-op worker (bench.noop_worker, SLOTS slots,
system token) drains everything. Figure: b's wait, job submitted -> its task claimed (the
job's started_at - created_at), median and max, with fair share (the default) and with the
server's --no-fair-share (strict order of arrival). SQLite.
"""

from __future__ import annotations

import asyncio
import statistics

from jobtask.v1 import job_pb2, job_service_pb2, job_task_pb2, task_service_pb2

from bench.harness import Child, Config, Result, bearer, log
from bench.stack import database, running

TASKS = 10_000
JOBS = 100
SLOTS = 10
CREATE_CONCURRENCY = 16


async def _waits(fair: bool, tasks: int, jobs: int) -> list[float]:
    extra = () if fair else ("--no-fair-share",)
    async with database("sqlite") as url, running(url, extra=extra, name="fairshare") as stack:
        a, b = (bearer(t) for t in stack.owners)
        worker_args = [
            stack.jobs_addr,
            stack.tasks_addr,
            stack.token,
            str(tasks + jobs),
            str(SLOTS),
        ]
        # Started first, so it is claiming when the work arrives (its one line comes at
        # the end, once it drained everything).
        worker = Child("bench.noop_worker", *worker_args)
        try:
            request = job_service_pb2.CreateJobRequest(
                job=job_pb2.Job(script="noop"), allow_duplicate=True
            )
            big = await stack.jobs.CreateJob(request, metadata=a)
            todo = iter(range(tasks - 1))

            async def creator() -> None:
                for _ in todo:
                    task = job_task_pb2.JobTask(job_uuid=big.uuid)
                    await stack.tasks.CreateTask(
                        task_service_pb2.CreateTaskRequest(job_task=task), metadata=a
                    )

            async def small_owner() -> list[str]:
                await asyncio.sleep(1.0)
                made = []
                for i in range(jobs):
                    job = job_pb2.Job(script="noop")
                    job.script_parameters.update({"i": i})
                    created = await stack.jobs.CreateJob(
                        job_service_pb2.CreateJobRequest(job=job), metadata=b
                    )
                    made.append(created.uuid)
                return made

            owner = asyncio.create_task(small_owner())
            await asyncio.gather(*(creator() for _ in range(CREATE_CONCURRENCY)))
            small = await owner
            await worker.line(1800)
        finally:
            await asyncio.to_thread(worker.stop)
        waits = []
        for uuid in small:
            job = await stack.jobs.GetJob(job_service_pb2.GetJobRequest(uuid=uuid), metadata=b)
            started = job.started_at.ToDatetime() - job.created_at.ToDatetime()
            waits.append(started.total_seconds())
        return waits


async def run(cfg: Config) -> list[Result]:
    tasks, jobs = cfg.pick((TASKS, JOBS), (200, 10))
    results = []
    for fair in (True, False):
        label = "fair share" if fair else "no fair share (arrival order)"
        log(f"fairshare: {tasks:,} tasks of owner a, {jobs} jobs of owner b, {label}")
        waits = await _waits(fair, tasks, jobs)
        for name, value in (("median", statistics.median(waits)), ("max", max(waits))):
            results.append(
                Result(
                    bench="fair share",
                    metric=f"owner b's {jobs} one-task jobs behind a's {tasks:,}-task fan-out: "
                    f"wait to claim, {name} (s), {label}",
                    unit="s",
                    value=value,
                    better="lower",
                )
            )
    return results
