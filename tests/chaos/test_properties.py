"""Property-based tests (Hypothesis) of the job and task status machines with their ripple,
through the real services (start_cluster) on SQLite and PostgreSQL: random sequences of job
verbs (cancel, requeue, pause, resume, priority) and task reports (claim, progress, success,
exit, child creation) on a small job. After every step:
- the job's tasks_summary equals a recount of its tasks;
- a canceled job has no task running;
- no call fails but for the refusals a caller may meet (FAILED_PRECONDITION, NOT_FOUND, a
  token that ended with its task), never INTERNAL/UNKNOWN.
At the end, once every lease ended: no task is running and the job is not left waiting
(cancel-requested, pause-requested); and over the job's whole change feed, no stored status
change is illegal (domain/statuses.py) and every stored job change's Arvados flags
(state, running, success, cancelled_at, finished_at, started_at) agree with its status.

Each example runs on a cluster of its own, in an event loop of its own."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobtask.store.database import Database
from jobtask.store.feed import full_payload
from jobtask.store.schema import TASK_STATUS_COUNTS, events
from jobtask.v1 import job_pb2, job_service_pb2
from sqlalchemy import select

from tests.chaos.history import History, check_transitions, flag_problems, summary_of
from tests.conftest import start_cluster
from tests.core.helpers import (
    TS,
    add_task,
    claim,
    create_job,
    exit_,
    get_job,
    job_tasks,
    report,
)

pytestmark = pytest.mark.timeout(600)

# Refusals a caller may meet when asking for a move the machine forbids, or reporting for a
# task that ended (its lease, token or the task itself gone).
REFUSALS = frozenset(
    {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)

SLOT = st.integers(0, 3)  # which of the held leases a report is for
STEP = st.one_of(
    st.tuples(st.sampled_from(["cancel", "requeue", "pause", "resume"])),
    st.tuples(st.just("priority"), st.integers(0, 1000)),
    st.tuples(st.just("claim")),
    st.tuples(st.just("progress"), SLOT, st.sampled_from([0.0, 0.5, 1.0])),
    st.tuples(st.just("success"), SLOT, st.booleans()),
    st.tuples(st.just("exit"), SLOT, st.sampled_from([0, 1])),
    st.tuples(st.just("child"), SLOT),
)
STEPS = st.lists(STEP, min_size=1, max_size=14)

JS = job_pb2.JobStatus


class Machine:
    def __init__(self, cluster: Any, job_uuid: str) -> None:
        self.cluster = cluster
        self.job_uuid = job_uuid
        self.held: list[Any] = []  # assignments whose lease we hold
        self.trace: list[str] = []

    async def step(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        jobs = self.cluster.jobs
        request: Any
        if kind in ("cancel", "requeue", "pause", "resume"):
            name = kind.capitalize() + "Job"
            request = getattr(job_service_pb2, name + "Request")(uuid=self.job_uuid)
            await self.call(getattr(jobs, name)(request))
        elif kind == "priority":
            request = job_service_pb2.UpdateJobRequest(
                uuid=self.job_uuid,
                job=job_pb2.Job(priority=step[1]),
                update_mask=field_mask_pb2.FieldMask(paths=["priority"]),
            )
            await self.call(jobs.UpdateJob(request))
        elif kind == "claim":
            assignment = await self.call(claim(self.cluster, "prop", "prop-node"))
            if assignment is not None:
                self.held.append(assignment)
        elif self.held:
            assignment = self.held[step[1] % len(self.held)]
            if kind == "progress":
                await self.call(report(self.cluster, assignment, progress=step[2]))
            elif kind == "success":
                fields = {"progress": 1.0, "success": True} if step[2] else {"success": False}
                await self.call(report(self.cluster, assignment, **fields))
            elif kind == "exit":
                self.held.remove(assignment)
                await self.call(exit_(self.cluster, assignment, step[2]))
            elif kind == "child":
                metadata = (("authorization", f"Bearer {assignment.task_token}"),)
                await self.call(
                    add_task(
                        self.cluster,
                        self.job_uuid,
                        metadata,
                        sequence=assignment.task.sequence + 1,
                        created_by_job_task_uuid=assignment.task.uuid,
                    )
                )
        self.trace.append(repr(step))
        await self.check()

    async def call(self, call: Any) -> Any:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            assert exc.code() in REFUSALS, (self.trace, exc.code(), exc.details())
            return None

    async def check(self) -> None:
        job = await get_job(self.cluster, self.job_uuid)
        tasks = await job_tasks(self.cluster, self.job_uuid)
        counts = {
            column: sum(1 for t in tasks if t.status == TS.Value("TASK_STATUS_" + name.upper()))
            for column, name in ((c, c.removeprefix("n_")) for c in TASK_STATUS_COUNTS)
        }
        summary = {
            "todo": job.tasks_summary.todo,
            "running": job.tasks_summary.running,
            "done": job.tasks_summary.done,
            "failed": job.tasks_summary.failed,
        }
        assert summary == summary_of(counts), (self.trace, summary, counts)
        if job.status == JS.JOB_STATUS_CANCELED:
            assert counts["n_active"] == 0, (self.trace, "canceled with a task running")

    async def finish(self) -> None:
        """Every held lease ends (the processes exit, failing); then nothing runs and the
        job waits for nothing."""
        for assignment in list(self.held):
            self.held.remove(assignment)
            await self.call(exit_(self.cluster, assignment, 1))
        self.trace.append("all exited")
        await self.check()
        job = await get_job(self.cluster, self.job_uuid)
        assert job.tasks_summary.running == 0, self.trace
        waiting = (JS.JOB_STATUS_CANCEL_REQUESTED, JS.JOB_STATUS_PAUSE_REQUESTED)
        assert job.status not in waiting, (self.trace, JS.Name(job.status))


async def run(database_url: str, steps: list[tuple[Any, ...]]) -> None:
    cluster = await start_cluster(database_url, lease_ttl=60.0)
    try:
        job = await cluster.jobs.CreateJob(
            create_job(script="sleeper.py", script_version="1", allow_duplicate=True)
        )
        machine = Machine(cluster, job.uuid)
        for step in steps:
            await machine.step(step)
        await machine.finish()
        db = Database(database_url)
        try:
            async with db.read() as conn:
                # Each payload in full, as history.read_store reads them.
                rows = [
                    {**r._mapping, "payload": full_payload(r.type, r.payload)}
                    for r in await conn.execute(
                        select(events).where(events.c.job_uuid == job.uuid).order_by(events.c.seq)
                    )
                ]
        finally:
            await db.dispose()
        history = History()
        check_transitions(rows, history)
        assert not history.problems, (machine.trace, history.problems)
        last_job = [r["payload"] for r in rows if r["type"] == "job_changed"][-1]
        assert not flag_problems(last_job), machine.trace
    finally:
        await cluster.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_status_machines_hold_under_random_verbs_and_reports(
    database_url: str, steps: list[tuple[Any, ...]]
) -> None:
    asyncio.run(run(database_url, steps))
