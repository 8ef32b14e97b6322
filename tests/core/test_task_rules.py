"""Sequence gating, child tasks, the completion rule, temporary failure and retries."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from tests.conftest import Cluster
from tests.core.helpers import (
    add_task,
    claim,
    create_job,
    exit_,
    get_job,
    get_task,
    job_status,
    job_tasks,
    report,
    succeed,
    task_status,
    token_md,
)
from tests.worker_protocol.helpers import Run


async def test_sequence_gates_and_children_wait_for_their_creator(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="split.py"))
    first = await claim(cluster)
    assert first.task.sequence == 0
    # The seed task creates children at sequence 1 (one task per input), with its own token.
    children = [
        await add_task(
            cluster,
            job.uuid,
            metadata=token_md(first.task_token),
            sequence=1,
            created_by_job_task_uuid=first.task.uuid,
            parameters={"input": f"part{i}"},
        )
        for i in range(3)
    ]
    # A later task at sequence 2, created by the manager: gated by sequence.
    last = await add_task(cluster, job.uuid, sequence=2, parameters={"final": True})
    assert await claim(cluster, "w2") is None  # children wait for their creator, last for seq 1
    await succeed(cluster, first, output="head\n")

    running = [await claim(cluster, f"w{i}") for i in range(3)]
    assert sorted(a.task.uuid for a in running) == sorted(c.uuid for c in children)
    assert await claim(cluster, "w9") is None  # sequence 2 waits for all of sequence 1
    for a in running:
        await succeed(cluster, a, output=f"{a.task.parameters['input']}\n")
    final = await claim(cluster)
    assert final.task.uuid == last.uuid
    await succeed(cluster, final, output="tail\n")

    done = await get_job(cluster, job.uuid)
    assert done.status == job_status("completed") and done.success and not done.running
    assert done.HasField("finished_at") and done.HasField("started_at")
    # Outputs concatenated in creation order.
    assert done.output == "head\npart0\npart1\npart2\ntail\n"
    assert done.tasks_summary.done == 5


async def test_children_of_a_task_failed_for_good_are_deleted(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="split.py"))
    first = await claim(cluster)
    for i in range(2):
        await add_task(
            cluster,
            job.uuid,
            metadata=token_md(first.task_token),
            sequence=1,
            created_by_job_task_uuid=first.task.uuid,
            parameters={"i": i},
        )
    await report(cluster, first, success=False)
    failed = await exit_(cluster, first, code=1)
    assert failed.status == task_status("failed") and failed.success is False
    remaining = await job_tasks(cluster, job.uuid)
    assert [t.uuid for t in remaining] == [first.task.uuid]
    assert (await get_job(cluster, job.uuid)).status == job_status("failed")


async def _two_children(cluster: Cluster, job_uuid: str, creator: Any) -> list[str]:
    return [
        (
            await add_task(
                cluster,
                job_uuid,
                metadata=token_md(creator.task_token),
                sequence=1,
                created_by_job_task_uuid=creator.task.uuid,
                parameters={"i": i},
            )
        ).uuid
        for i in range(2)
    ]


@pytest.mark.parametrize("end", ["temporary failure", "handed back"])
async def test_children_of_an_attempt_that_did_not_complete_are_deleted(
    cluster: Cluster, end: str
) -> None:
    # The next attempt runs the creator again, which creates its children again: kept, the
    # first attempt's would run too (Arvados deletes them once `success` is false, which
    # crunch-job sets on a temporary failure).
    job = await cluster.jobs.CreateJob(create_job(script="split.py"))
    first = await claim(cluster)
    await _two_children(cluster, job.uuid, first)
    if end == "handed back":
        # (The worker is stopping: RunTask's exit hands the task back unfailed.)
        ended = (await Run(cluster, first).exit(handed_back=True)).task
        assert ended.status == task_status("queued")
    else:
        await report(cluster, first, progress=0.4)
        ended = await exit_(cluster, first, code=0)
        assert ended.status == task_status("soft-failed")
    assert [t.uuid for t in await job_tasks(cluster, job.uuid)] == [first.task.uuid]
    assert (await get_job(cluster, job.uuid)).tasks_summary.todo == 1

    again = await claim(cluster, "w2")
    assert again.task.uuid == first.task.uuid
    children = await _two_children(cluster, job.uuid, again)
    await succeed(cluster, again)
    for _ in children:
        await succeed(cluster, await claim(cluster, "w3"))
    assert await claim(cluster, "w4") is None
    done = await get_job(cluster, job.uuid)
    assert done.status == job_status("completed") and done.tasks_summary.done == 3
    assert sorted(t.uuid for t in await job_tasks(cluster, job.uuid)) == sorted(
        [first.task.uuid, *children]
    )


async def test_completion_needs_progress_one_and_success(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="s.py"))
    a = await claim(cluster)
    await report(cluster, a, progress=0.5, success=True)
    decided = await exit_(cluster, a)
    assert decided.status == task_status("failed")


async def test_exit_without_success_is_retried_until_the_limit(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(create_job(script="flaky.py"))
    for attempt in range(1, 3):
        a = await claim(cluster, f"w{attempt}")
        assert a.task.attempt == attempt
        await report(cluster, a, progress=0.4)
        decided = await exit_(cluster, a, code=0)
        assert decided.status == task_status("soft-failed")
        assert decided.failed_count == attempt and decided.HasField("failed_at")
        assert "without deciding success" in decided.failed_log
        assert not decided.HasField("success")
        assert (await get_job(cluster, job.uuid)).status == job_status("active")
    a = await claim(cluster, "w3")
    decided = await exit_(cluster, a, code=1)
    assert decided.status == task_status("failed") and decided.failed_count == 3
    assert (await get_job(cluster, job.uuid)).status == job_status("failed")


async def test_a_task_is_not_given_again_to_the_worker_that_failed_it(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="flaky.py"))
    a = await claim(cluster, "w1")
    await claim(cluster, "w2")  # makes w2 a live worker (nothing to claim yet)
    await exit_(cluster, a)
    assert await claim(cluster, "w1") is None
    again = await claim(cluster, "w2")
    assert again is not None and again.task.uuid == a.task.uuid


async def test_only_the_tasks_process_may_report_on_it(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="s.py"))
    await cluster.jobs.CreateJob(create_job(script="t.py"))
    a = await claim(cluster, "w1")
    b = await claim(cluster, "w2")
    await report(cluster, a, progress=0.25)
    # b's token cannot report on a's task.
    b_for_a = type(b)()
    b_for_a.CopyFrom(a)
    b_for_a.task_token = b.task_token
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await report(cluster, b_for_a, progress=0.5)
    assert err.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)
    assert (await get_task(cluster, a.task.uuid)).progress == 0.25
