"""Group commit: the batches of many RunTask streams applied in shared transactions."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from jobtask.domain.errors import NotFound, Unavailable
from jobtask.domain.reports import Batch, Instruction, Report
from jobtask.manager.context import Caller
from jobtask.manager.reports import Submission
from jobtask.v1 import task_service_pb2, watch_pb2

from tests.conftest import Cluster
from tests.core.helpers import (
    committer_canceled_before_it_ran,
    get_job,
    get_task,
    job_status,
    task_status,
)
from tests.core.raw_rows import connect, lock_waits
from tests.polling import DEADLINE, eventually
from tests.worker_protocol.helpers import Run, claim_many, job_with_tasks, watch_events

TSP = task_service_pb2
CHANGED = watch_pb2.WATCH_EVENT_TYPE_TASK_CHANGED


def ending(assignment: TSP.TaskAssignment, caller: Caller) -> Submission:
    """A batch that reports the whole task: done, successful, exit 0."""
    batch = Batch()
    batch.add(Report(seq=1, progress=1.0, success=True, exit_code=0))
    return Submission(caller, assignment.task.uuid, assignment.lease.lease_id, batch)


async def _finish(cluster: Cluster, a: TSP.TaskAssignment, lease_id: str | None = None):  # type: ignore[no-untyped-def]
    """One stream whose only message reports the whole task: done, successful, exit 0."""
    if lease_id is not None:
        a = TSP.TaskAssignment(task=a.task, job=a.job, lease=TSP.Lease(lease_id=lease_id))
    run = Run(cluster, a)
    await run.send(progress=1.0, success=True, output=f"{a.task.uuid}\n", exit_code=0)
    return await run.until(lambda r: r.instruction == TSP.INSTRUCTION_STOP, within=30)


async def test_many_streams_ending_at_once_complete_every_task_exactly(cluster: Cluster) -> None:
    first = await job_with_tasks(cluster, "one.py", 24)
    second = await job_with_tasks(cluster, "two.py", 9)
    claimed = await claim_many(cluster, "w1", 35)
    assert len(claimed) == 35
    stale = claimed[0]
    answers = await asyncio.gather(
        _finish(cluster, stale, lease_id="not-the-lease"),
        *(_finish(cluster, a) for a in claimed[1:]),
    )

    # The stream with a stale lease is told its lease is lost; its task is untouched.
    assert not answers[0].HasField("task") and "lease was lost" in answers[0].reason
    assert (await get_task(cluster, stale.task.uuid)).status == task_status("active")
    for a, answer in zip(claimed[1:], answers[1:], strict=True):
        assert answer.task.uuid == a.task.uuid
        assert answer.task.status == task_status("completed")
        assert answer.acked_seq == 1

    finished = await _finish(cluster, stale)
    assert finished.task.status == task_status("completed")
    for uuid, n in ((first, 25), (second, 10)):
        job = await get_job(cluster, uuid)
        assert job.status == job_status("completed")
        assert (job.tasks_summary.done, job.tasks_summary.running, job.tasks_summary.todo) == (
            n,
            0,
            0,
        )
        # Each task's last report and its completion are one event.
        events = await watch_events(cluster, uuid, after_seq=0)
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        by_task: dict[str, list[watch_pb2.WatchEvent]] = {}
        for e in events:
            if e.type == CHANGED:
                by_task.setdefault(e.task_uuid, []).append(e)
        assert len(by_task) == n
        for uuid_, changes in by_task.items():
            # Claimed, then ended: no event for the report apart from the decision's.
            assert [c.task.status for c in changes] == [
                task_status("active"),
                task_status("completed"),
            ], uuid_
            last = changes[-1].task
            assert last.progress == 1.0 and last.success and last.output == f"{uuid_}\n"


async def test_a_refused_batch_fails_alone_and_the_rest_of_its_group_commits(
    cluster: Cluster,
) -> None:
    await job_with_tasks(cluster, "mixed.py", 2)
    a, b, c = await claim_many(cluster, "w1", 3)
    admin = cluster.services.core.settings.system_caller()
    stranger = Caller(user_uuid="zzzzz-tpzed-000000000000042")
    commits = cluster.services.core.runs.commits
    # Handed in together, before the committer first runs: one group.
    outcomes = await asyncio.gather(
        commits.apply(ending(a, admin)),
        commits.apply(ending(b, stranger)),
        commits.apply(ending(c, admin)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], NotFound)
    for outcome, assignment in ((outcomes[0], a), (outcomes[2], c)):
        assert not isinstance(outcome, BaseException)
        assert outcome.verdict.instruction is Instruction.STOP
        assert outcome.finished is not None and outcome.finished.status == "completed"
        assert (await get_task(cluster, assignment.task.uuid)).status == task_status("completed")
    assert (await get_task(cluster, b.task.uuid)).status == task_status("active")


@pytest.mark.parametrize("success", [False, None])
async def test_a_failed_end_in_a_group_is_decided_by_the_completion_rule(
    cluster: Cluster, success: bool | None
) -> None:
    """A report and the exit in one message: the rule sees the report (seeds: progress 1.0
    and success true complete; success false fails for good; otherwise a retry)."""
    await job_with_tasks(cluster, "rule.py", 0)
    (a,) = await claim_many(cluster, "w1", 1)
    run = Run(cluster, a)
    fields = {"progress": 0.5, "exit_code": 1}
    if success is not None:
        fields["success"] = success
    final = await run.exit(**fields)
    expected = "failed" if success is False else "soft-failed"
    assert final.task.status == task_status(expected)
    stored = await get_task(cluster, a.task.uuid)
    assert stored.status == task_status(expected)
    assert stored.failed_count == (0 if success is False else 1)


async def test_a_stream_whose_group_commit_is_canceled_fails_unavailable(cluster: Cluster) -> None:
    """The committer is canceled (as the server stops) while a RunTask stream waits for its
    batch: the stream ends UNAVAILABLE, which workers retry, not CANCELLED (a canceled future
    would have said the caller gave up); the task keeps its lease."""
    if cluster.services.core.db.is_sqlite:
        pytest.skip("PostgreSQL only: a held job row keeps the group's committer running")
    job_uuid = await job_with_tasks(cluster, "stop.py", 0)
    (a,) = await claim_many(cluster, "w1", 1)
    commits = cluster.services.core.runs.commits
    holder = await connect(cluster.services.core.db.url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM jobs WHERE uuid = $1 FOR UPDATE", job_uuid)
            run = Run(cluster, a)
            await run.send(progress=1.0, success=True, exit_code=0)
            committer = await eventually(lambda: commits.running)
            await eventually(lambda: lock_waits(holder))  # (its statement waits)
            committer.cancel()
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await run.until(lambda r: False)
    finally:
        await holder.close()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value
    assert "shutting down" in (ended.value.details() or "")
    assert (await get_task(cluster, a.task.uuid)).status == task_status("active")


async def test_a_committer_canceled_before_it_ran_answers_its_streams(cluster: Cluster) -> None:
    """A committer canceled before its first step (as the server stops) never runs its own
    cleanup: the batch waiting on it is still told UNAVAILABLE (its stream would otherwise
    wait forever), and the next batch starts another committer."""
    await job_with_tasks(cluster, "early.py", 0)
    (a,) = await claim_many(cluster, "w1", 1)
    admin = cluster.services.core.settings.system_caller()
    commits = cluster.services.core.runs.commits
    waiting = await committer_canceled_before_it_ran(commits, commits.apply(ending(a, admin)))
    with pytest.raises(Unavailable, match="shutting down"):
        await asyncio.wait_for(waiting, DEADLINE)
    assert commits.running is None
    outcome = await asyncio.wait_for(commits.apply(ending(a, admin)), DEADLINE)
    assert outcome.finished is not None and outcome.finished.status == "completed"
