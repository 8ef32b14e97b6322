"""Issue 6: 3 TaskService and 2 JobService processes on one PostgreSQL database, 8 worker
processes, 2,000 tasks in 5 jobs (JOBTASK_SCALE_TASKS to change it). Every task
completes exactly once, every job completes, and watchers on the JobService replica that did
not take the submissions see every event of their job, in order. Then the same with a
TaskService replica killed with SIGKILL midway.

Each job's seed task (sequence 0) creates its children (tests/scripts/scale_task): the
children only become runnable when their seed completed, so every job fans out through
TaskService while workers of all three replicas claim."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time

import pytest
from jobtask.sdk import AsyncClient

from tests.polling import eventually
from tests.scale.checks import (
    check_history,
    check_watch,
    completed_tasks,
    fetch,
    watch_job,
)
from tests.scale.conftest import ROOT_TOKEN, Part, Topology

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(900)]

JOBS = 5
# The figure. About two minutes per test on an idle two-core machine; WITHIN (and the
# tests' own timeout) leave room for a shared, loaded one. docs/scaling.md.
TASKS = int(os.environ.get("JOBTASK_SCALE_TASKS", "2000"))
CHILDREN = TASKS // JOBS - 1  # per job: 1 seed + CHILDREN
WORKERS = 8
SLOTS = 2
WITHIN = float(os.environ.get("JOBTASK_SCALE_WITHIN", "600"))


def rotated(addrs: list[str], first: int) -> str:
    """Worker i prefers replica i mod n and falls back to the others, in order."""
    return ",".join(addrs[first % len(addrs) :] + addrs[: first % len(addrs)])


async def start(topology: Topology) -> tuple[list[Part], list[Part], list[Part]]:
    tasks, jobs = await asyncio.gather(
        topology.serve_many("tasks", 3), topology.serve_many("jobs", 2)
    )
    token = await topology.worker_token()
    task_addrs = [t.addr for t in tasks]
    workers = list(
        await asyncio.gather(
            *(
                topology.worker(
                    f"w{i}",
                    jobs_addr=jobs[i % len(jobs)].addr,
                    tasks_addr=rotated(task_addrs, i),
                    token=token,
                    slots=SLOTS,
                )
                for i in range(WORKERS)
            )
        )
    )
    return tasks, jobs, workers


async def submit_and_watch(
    topology: Topology, jobs: list[Part]
) -> tuple[list[str], list[asyncio.Task[object]]]:
    """Submits through jobs[0]; one watcher per job on jobs[1]."""
    runlog = topology.tmp_path / "runs.log"
    runlog.touch()
    async with AsyncClient.connect(jobs[0].addr, jobs[0].addr, ROOT_TOKEN) as client:
        submitted = [
            await client.submit(
                "scale_task",
                {"children": CHILDREN, "runlog": str(runlog), "n": n},
                allow_duplicate=True,
            )
            for n in range(JOBS)
        ]
    uuids = [job.uuid for job in submitted]
    watchers: list[asyncio.Task[object]] = [
        asyncio.create_task(watch_job(jobs[1].addr, ROOT_TOKEN, uuid, WITHIN)) for uuid in uuids
    ]
    return uuids, watchers


async def test_every_task_runs_exactly_once_across_three_task_replicas(
    topology: Topology,
) -> None:
    began = time.monotonic()
    _, jobs, _ = await start(topology)
    _, watchers = await submit_and_watch(topology, jobs)
    try:
        watched = await asyncio.wait_for(asyncio.gather(*watchers), WITHIN)
    except TimeoutError:
        raise AssertionError(
            f"{await completed_tasks(topology.database_url)} tasks completed in {WITHIN}s\n"
            + topology.logs()
        ) from None
    elapsed = time.monotonic() - began
    url = topology.database_url
    for seen in watched:
        await check_watch(url, seen)  # type: ignore[arg-type]
    history = await check_history(url, topology.tmp_path / "runs.log", tasks=JOBS * (1 + CHILDREN))
    # Nothing failed, nothing was retried: one attempt and (children) one run per task.
    assert set(history.attempts_per_task.values()) == {1}
    assert set(history.runs_per_task.values()) == {1}
    print(f"\n{history.tasks} tasks on 3+2 replicas and {WORKERS} workers: {elapsed:.1f}s")


async def test_a_task_replica_killed_midway_loses_nothing(topology: Topology) -> None:
    began = time.monotonic()
    tasks, jobs, workers = await start(topology)
    _, watchers = await submit_and_watch(topology, jobs)
    url = topology.database_url
    total = JOBS * (1 + CHILDREN)
    await eventually(lambda: _at_least(url, total // 3), within=WITHIN)
    victim = tasks[0]
    topology.kill(victim)
    await victim.proc.wait()
    killed_at = dt.datetime.now(dt.UTC)
    done_at_kill = await completed_tasks(url)
    try:
        watched = await asyncio.wait_for(asyncio.gather(*watchers), WITHIN)
    except TimeoutError:
        raise AssertionError(
            f"{await completed_tasks(url)} tasks completed in {WITHIN}s\n" + topology.logs()
        ) from None
    elapsed = time.monotonic() - began
    for seen in watched:
        await check_watch(url, seen)  # type: ignore[arg-type]
    history = await check_history(url, topology.tmp_path / "runs.log", tasks=total, since=killed_at)
    # The workers that preferred the dead replica moved to another and kept claiming.
    orphans = [f"node-{w.name}" for i, w in enumerate(workers) if i % len(tasks) == 0]
    for worker_id in orphans:
        assert history.attempts_by_worker_after[worker_id] > 0, (
            f"{worker_id} claimed nothing after the kill\n" + topology.logs()
        )
    assert all(w.running for w in workers)
    retried = sum(1 for n in history.attempts_per_task.values() if n > 1)
    print(
        f"\nkilled {victim.name} at {done_at_kill}/{total} completed; "
        f"{retried} task(s) retried; {elapsed:.1f}s"
    )


async def _at_least(url: str, n: int) -> bool:
    rows = await fetch(url, "SELECT count(*) AS n FROM job_tasks WHERE status = 'completed'")
    return int(rows[0]["n"]) >= n
