"""WorkerSession: assignments pushed to a worker's one stream, reports of many tasks per
message, one heartbeat for all leases, cancel pushed down, leases kept to their ttl when the
session is cut (and reattached by the next one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from jobtask.observability.metrics import SILENT_SESSIONS
from jobtask.observability.streams import WORKER_SLOTS
from jobtask.v1 import job_service_pb2, task_service_pb2

from tests.conftest import Cluster
from tests.core.helpers import (
    create_job,
    get_job,
    get_task,
    job_status,
    job_tasks,
    task_status,
    token_md,
)
from tests.core.raw_rows import connect, lock_waits
from tests.polling import eventually
from tests.worker_protocol.helpers import job_with_tasks

TSP = task_service_pb2
CONTINUE = TSP.INSTRUCTION_CONTINUE
CANCEL = TSP.INSTRUCTION_CANCEL
STOP = TSP.INSTRUCTION_STOP


class Session:
    """One WorkerSession, driven message by message."""

    def __init__(self, cluster: Cluster, worker_id: str, slots: int, node: str = "node1") -> None:
        self.call = cluster.tasks.WorkerSession(metadata=token_md(cluster.root_token or ""))
        self.worker_id = worker_id
        self.slots = slots
        self.node = node
        self.assignments: list[TSP.TaskAssignment] = []
        # How many assignments each message carried that carried any.
        self.pushes: list[int] = []
        self.updates: list[TSP.TaskUpdate] = []
        self.heartbeats = 0

    async def open(
        self, heartbeat_interval: float | None = None, decided_select: tuple[str, ...] = ()
    ) -> None:
        info = TSP.WorkerInfo(
            worker_id=self.worker_id,
            node_name=self.node,
            free_slots=self.slots,
            decided_select=decided_select,
        )
        if heartbeat_interval is not None:
            info.heartbeat_interval.FromNanoseconds(int(heartbeat_interval * 1e9))
        await self.call.write(TSP.WorkerSessionRequest(open=info))

    async def send(self, **fields: Any) -> None:
        await self.call.write(TSP.WorkerSessionRequest(**fields))

    async def until(self, check: Callable[[], bool], within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while not check():
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the session did not answer in time"
            response = await asyncio.wait_for(self.call.read(), remaining)
            assert response is not grpc.aio.EOF, "the session ended"  # type: ignore[attr-defined]
            self.assignments.extend(response.assignments)
            if response.assignments:
                self.pushes.append(len(response.assignments))
            self.updates.extend(response.updates)
            self.heartbeats += response.heartbeat_acked

    def finals(self) -> dict[str, TSP.TaskUpdate]:
        return {u.task_uuid: u for u in self.updates if u.HasField("task")}


def done(a: TSP.TaskAssignment, seq: int = 1) -> TSP.RunTaskRequest:
    return TSP.RunTaskRequest(
        task_uuid=a.task.uuid,
        lease_id=a.lease.lease_id,
        seq=seq,
        progress=1.0,
        success=True,
        exit_code=0,
    )


async def test_assignments_are_pushed_and_many_tasks_finish_in_one_message(
    cluster: Cluster,
) -> None:
    job_uuid = await job_with_tasks(cluster, "noop.py", 4)
    session = Session(cluster, "w-session", 3)
    await session.open()
    # Three slots: three tasks pushed without any request for them.
    await session.until(lambda: len(session.assignments) >= 3)
    assert len(session.assignments) == 3
    first = list(session.assignments)
    await session.send(reports=[done(a) for a in first])
    await session.until(lambda: len(session.finals()) == 3)
    for a in first:
        final = session.finals()[a.task.uuid]
        assert final.task.status == task_status("completed")
        assert final.acked_seq == 1 and final.instruction == STOP
    # Credits free slots: the two remaining tasks come down.
    await session.send(credits=3)
    await session.until(lambda: len(session.assignments) == 5)
    rest = session.assignments[3:]
    await session.send(reports=[done(a) for a in rest])
    await session.until(lambda: len(session.finals()) == 5)
    finished = await get_job(cluster, job_uuid)
    assert finished.status == job_status("completed")
    await session.call.done_writing()


async def test_postgres_claims_half_the_slots_at_a_time(cluster: Cluster) -> None:
    """On PostgreSQL a worker's slots are filled in two claims, so that the second claim
    overlaps the worker's run of the first part (and the flush of its reports) instead of
    the slots turning over as one wave; on SQLite (statements in the server's own thread,
    nothing to overlap) in one."""
    await job_with_tasks(cluster, "noop.py", 5)
    session = Session(cluster, "w-parts", 4)
    await session.open()
    await session.until(lambda: len(session.assignments) >= 4)
    if cluster.services.core.db.is_sqlite:
        assert session.pushes == [4]
    else:
        assert session.pushes == [2, 2]
    # Each slot freed and credited is filled again, in parts as well.
    await session.send(reports=[done(a) for a in session.assignments])
    await session.until(lambda: len(session.finals()) == 4)
    await session.send(credits=4)
    await session.until(lambda: len(session.assignments) == 6)
    await session.send(reports=[done(a) for a in session.assignments[4:]])
    await session.until(lambda: len(session.finals()) == 6)
    await session.call.done_writing()


async def test_the_free_slots_metric_counts_the_workers_free_slots(cluster: Cluster) -> None:
    """jobtask_worker_free_slots adds up what each live worker has free after its last
    claim -- its slots, not the part of them one claim took (half, on PostgreSQL)."""
    await cluster.jobs.CreateJob(create_job(script="noop.py"))  # (one task: its seed)
    session = Session(cluster, "w-free-slots", 4)
    await session.open()
    await session.until(lambda: len(session.assignments) == 1)
    free = await eventually(lambda: WORKER_SLOTS.announced("w-free-slots") == 3 or None)
    assert free
    await session.call.done_writing()


async def test_a_claim_while_another_is_in_progress_takes_all_its_credits(
    cluster: Cluster, database_url: str
) -> None:
    """PostgreSQL: a claim with another session's claim in progress has that one to overlap,
    so it takes all of its worker's credits; only the claim started alone takes a part."""
    if cluster.services.core.db.is_sqlite:
        pytest.skip("PostgreSQL only: on SQLite claims are never split")
    job_uuid = await job_with_tasks(cluster, "noop.py", 9)
    holder = await connect(database_url)
    try:
        # The job's row held: both sessions' claims wait for it, in progress.
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT 1 FROM jobs WHERE uuid = $1 FOR UPDATE", job_uuid)

        async def waiting_claims() -> int:
            return len(await lock_waits(holder))

        # (Two nodes: one process's claims for one node take turns before they reach the
        # database, on PostgreSQL's guarded path.)
        first = Session(cluster, "w-first", 4, node="node1")
        await first.open()
        await eventually(lambda: _at_least(waiting_claims, 1))
        second = Session(cluster, "w-second", 4, node="node2")
        await second.open()
        await eventually(lambda: _at_least(waiting_claims, 2))
        await held.rollback()
        await first.until(lambda: len(first.assignments) >= 2)
        await second.until(lambda: len(second.assignments) >= 4)
        assert first.pushes[0] == 2
        assert second.pushes[0] == 4
    finally:
        await holder.close()
    first.call.cancel()
    second.call.cancel()


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


async def test_a_task_created_later_is_pushed_without_polling(cluster: Cluster) -> None:
    session = Session(cluster, "w-idle", 2)
    await session.open()
    # Nothing runnable yet; the session waits on the change signal.
    job = await cluster.jobs.CreateJob(create_job(script="noop.py"))
    await session.until(lambda: len(session.assignments) == 1)
    (a,) = session.assignments
    assert a.job.uuid == job.uuid and a.task_token
    await session.send(reports=[done(a)])
    await session.until(lambda: len(session.finals()) == 1)
    await session.call.done_writing()


async def test_one_heartbeat_renews_every_lease_and_cancel_comes_down(cluster: Cluster) -> None:
    await job_with_tasks(cluster, "noop.py", 1)
    session = Session(cluster, "w-beat", 2)
    await session.open()
    await session.until(lambda: len(session.assignments) == 2)
    before = {a.task.uuid: a.lease.expires_at.ToDatetime() for a in session.assignments}
    await asyncio.sleep(0.05)
    await session.send(heartbeat=True)
    await session.until(lambda: session.heartbeats == 1)
    renewed = {u.task_uuid: u for u in session.updates}
    assert renewed.keys() == before.keys()
    for uuid, update in renewed.items():
        assert update.instruction == CONTINUE
        assert update.lease.expires_at.ToDatetime() > before[uuid]
    # The job is canceled: each task hears CANCEL on the session, unasked.
    job_uuid = session.assignments[0].job.uuid
    await cluster.jobs.CancelJob(job_service_pb2.CancelJobRequest(uuid=job_uuid))
    await session.until(
        lambda: {u.task_uuid for u in session.updates if u.instruction == CANCEL} == before.keys()
    )
    await session.send(
        reports=[
            TSP.RunTaskRequest(task_uuid=a.task.uuid, lease_id=a.lease.lease_id, seq=1, signal=2)
            for a in session.assignments
        ]
    )
    await session.until(lambda: len(session.finals()) == 2)
    await session.call.done_writing()


async def test_a_session_that_ends_fails_its_tasks_temporarily(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="noop.py"))
    session = Session(cluster, "w-gone", 1)
    await session.open()
    await session.until(lambda: len(session.assignments) == 1)
    (a,) = session.assignments
    session.call.cancel()

    async def requeued() -> bool:
        task = await get_task(cluster, a.task.uuid)
        return task.status == task_status("soft_failed") and task.failed_count == 1

    deadline = time.monotonic() + 20
    while not await requeued():
        assert time.monotonic() < deadline, "the abandoned task was not failed temporarily"
        await asyncio.sleep(0.1)


async def test_a_cut_session_reopened_carries_on_with_its_leases(signalled: Cluster) -> None:
    """A session cut while its worker lives (a proxy or balancer between them restarted):
    the worker opens another and reattaches its leases (a report with nothing in it), and
    its task finishes as if nothing had happened -- no attempt ended, nothing retried. (A
    worker that never comes back has its attempts ended by the reaper as the leases
    expire: test_a_session_that_ends_fails_its_tasks_temporarily.)"""
    cluster = signalled  # (its leases outlast any wait here)
    await cluster.jobs.CreateJob(create_job(script="noop.py"))
    first = Session(cluster, "w-cut", 1)
    await first.open()
    await first.until(lambda: len(first.assignments) == 1)
    (a,) = first.assignments
    first.call.cancel()
    # Time for the server to see the cut (ending the attempt there, before, took ~1 ms).
    await asyncio.sleep(1.0)
    task = await get_task(cluster, a.task.uuid)
    assert task.status == task_status("active") and task.failed_count == 0
    second = Session(cluster, "w-cut", 0)
    await second.open()
    attach = TSP.RunTaskRequest(task_uuid=a.task.uuid, lease_id=a.lease.lease_id)
    await second.send(reports=[attach])
    await second.until(lambda: any(u.task_uuid == a.task.uuid for u in second.updates))
    (update,) = [u for u in second.updates if u.task_uuid == a.task.uuid]
    assert update.instruction == CONTINUE, update
    await second.send(reports=[done(a)])
    await second.until(lambda: a.task.uuid in second.finals())
    final = second.finals()[a.task.uuid].task
    assert final.status == task_status("completed")
    assert final.attempt == 1 and final.failed_count == 0
    await second.call.done_writing()


async def test_a_session_whose_report_group_was_interrupted_ends_and_its_lease_lives_on(
    cluster: Cluster,
) -> None:
    """The group commit applying a session's reports is canceled under it (as when the
    server stops: its waiters are told UNAVAILABLE). The session ends UNAVAILABLE rather than
    living on deaf to its worker, and the task's lease outlives it: a new session reports on
    it and the task completes."""
    if cluster.services.core.db.is_sqlite:
        pytest.skip("PostgreSQL only: a held job row keeps the group's committer running")
    job_uuid = await job_with_tasks(cluster, "noop.py", 0)
    session = Session(cluster, "w-interrupted", 1)
    await session.open()
    await session.until(lambda: len(session.assignments) == 1)
    (a,) = session.assignments
    commits = cluster.services.core.runs.commits
    # The job's row held elsewhere: the report's group waits for it, its committer running.
    holder = await connect(cluster.services.core.db.url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM jobs WHERE uuid = $1 FOR UPDATE", job_uuid)
            await session.send(reports=[done(a)])
            committer = await eventually(lambda: commits.running)
            # Canceled once the group waits for the held row (its statement in the database,
            # its waiters' futures pending): the cancel interrupts that wait (asyncpg sends
            # the server a cancel request) and the session ends while the row is still held.
            waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted"
            await eventually(lambda: holder.fetchval(waiting))
            committer.cancel()
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await session.until(lambda: False)
    finally:
        await holder.close()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    # Its lease lived on: another session's report on it completes the task.
    again = Session(cluster, "w-interrupted", 1)
    await again.open()
    await again.send(reports=[done(a)])
    await again.until(lambda: a.task.uuid in again.finals())
    assert (await get_task(cluster, a.task.uuid)).status == task_status("completed")
    await again.call.done_writing()


async def test_a_session_needs_open_first(cluster: Cluster) -> None:
    call = cluster.tasks.WorkerSession(metadata=token_md(cluster.root_token or ""))
    await call.write(TSP.WorkerSessionRequest(credits=1))
    try:
        await call.read()
        raise AssertionError("the session accepted a first message without open")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "open" in (exc.details() or "")


async def test_a_worker_silent_past_its_promise_is_assigned_nothing_until_it_speaks(
    cluster: Cluster,
) -> None:
    """A stopped or hung worker keeps its connection and the credits it gave. One that
    promised a message every 0.25 s and sent none for twice that gets no task (each would
    wait out its lease and burn a retry), and the claims its session makes do not keep it
    live: its last_seen_at stays its own last message. Its next message ends the wait."""
    session = Session(cluster, "w-silent", 2)
    opened = time.time()
    await session.open(heartbeat_interval=0.25)
    # Registered by the session's first claim (nothing runnable yet).
    get = TSP.GetWorkerRequest(worker_id="w-silent")
    await eventually(lambda: _worker_known(cluster, get))
    await asyncio.sleep(0.8)  # silent for more than two promised intervals
    job = await cluster.jobs.CreateJob(create_job(script="noop.py"))
    (seed,) = await job_tasks(cluster, job.uuid)
    await asyncio.sleep(1.0)
    assert (await get_task(cluster, seed.uuid)).status == task_status("queued")
    assert SILENT_SESSIONS._value.get() == 1  # (the operator's signal)
    worker = await cluster.tasks.GetWorker(get)
    assert worker.last_seen_at.ToDatetime().timestamp() < opened + 0.5
    await session.send(heartbeat=True)
    await session.until(lambda: len(session.assignments) == 1)
    assert session.assignments[0].task.uuid == seed.uuid
    assert SILENT_SESSIONS._value.get() == 0
    await session.send(reports=[done(session.assignments[0])])
    await session.until(lambda: len(session.finals()) == 1)
    await session.call.done_writing()


async def _worker_known(cluster: Cluster, get: TSP.GetWorkerRequest) -> bool:
    try:
        await cluster.tasks.GetWorker(get)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


@pytest.mark.parametrize("seconds", [0.05, 3601.0])
async def test_a_heartbeat_interval_out_of_bounds_is_refused(
    cluster: Cluster, seconds: float
) -> None:
    session = Session(cluster, "w-bad-interval", 1)
    await session.open(heartbeat_interval=seconds)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await session.call.read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "open.heartbeat_interval" in (refused.value.details() or "")


async def test_decided_tasks_hold_the_fields_the_worker_selected(cluster: Cluster) -> None:
    """open.decided_select: each decided task the session sends (an exit's answer) holds
    the fields named and `kind`, as a whole read of the task has them; nothing else."""
    job_uuid = await job_with_tasks(cluster, "noop.py", 2)
    session = Session(cluster, "w-decided-select", 2)
    await session.open(decided_select=("status", "uuid", "finished_at"))
    await session.until(lambda: len(session.assignments) == 2)
    await session.send(reports=[done(a) for a in session.assignments])
    await session.until(lambda: len(session.finals()) == 2)
    for uuid, final in session.finals().items():
        whole = await get_task(cluster, uuid)
        assert [f.name for f, _ in final.task.ListFields()] == [
            "uuid",
            "kind",
            "finished_at",
            "status",
        ]
        assert final.task.status == whole.status == task_status("completed")
        assert final.task.finished_at == whole.finished_at and final.task.uuid == uuid
        assert final.instruction == STOP and final.acked_seq == 1
    assert (await get_job(cluster, job_uuid)).tasks_summary.done == 2
    await session.call.done_writing()


async def test_an_unknown_decided_attribute_is_refused_by_name(cluster: Cluster) -> None:
    session = Session(cluster, "w-bad-select", 1)
    await session.open(decided_select=("status", "nope"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await session.call.read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert details.startswith("open.decided_select: unknown attribute 'nope'"), details


async def test_a_busy_session_claims_two_at_a_time_and_never_a_task_twice(
    cluster: Cluster,
) -> None:
    """On PostgreSQL a busy session's second claimer claims while the first one's claim is
    still writing (they overlap: the node's turn is held only while a claim chooses), each
    passing over the tasks the other reserved: every task is assigned once, no guard fails
    (which taking the other's tasks would), and claims did overlap. On SQLite one claimer."""
    claims = cluster.services.core.claims
    job_uuid = await job_with_tasks(cluster, "noop.py", 300)
    session = Session(cluster, "w-overlap", 40)
    await session.open()
    answered = 0

    def more() -> bool:
        return len(session.assignments) > answered

    while len(session.finals()) < 301:
        await session.until(more)
        fresh = session.assignments[answered:]
        answered = len(session.assignments)
        # Each message of assignments answered at once: the reports, and the slots freed.
        await session.send(reports=[done(a) for a in fresh], credits=len(fresh))
        if answered == 301:
            await session.until(lambda: len(session.finals()) == 301)
    uuids = [a.task.uuid for a in session.assignments]
    assert len(set(uuids)) == len(uuids) == 301
    assert (await get_job(cluster, job_uuid)).status == job_status("completed")
    if cluster.services.core.db.is_sqlite:
        assert claims.overlapping == 0
    else:
        assert claims.unguarded == 0 and claims.overlapping > 0, (
            claims.guarded,
            claims.overlapping,
        )
    await session.call.done_writing()
