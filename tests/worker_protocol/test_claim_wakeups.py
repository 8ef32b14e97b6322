"""A claim that found nothing waits for a change that may have made a task claimable
(ChangeSignal.claim_mark). Tasks created by a task that has not completed -- a fan-out's
first task queueing its work -- make nothing claimable: a task runs only once its creator
completed. Their commit wakes watchers but no waiting claim. Each commit of a fan-out's
creation did, and every such claim read through all the tasks created so far: at 20,000
tasks, twenty claims of 10 to 110 ms of the database's time each, growing with the
fan-out. The creator's completion, or a task nothing holds back, wakes them.

On PostgreSQL, where other processes' commits are heard by NOTIFY and this process's own
are told apart. SQLite's poll of the feed (upkeep.poll_feed_forever) cannot tell this
process's events from another's and wakes claims whenever the feed grew: there a fan-out's
creation still wakes them, at most once a poll interval."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from jobtask.store.schema import workers
from jobtask.v1 import task_service_pb2
from sqlalchemy import select

from tests.conftest import Cluster, running_cluster
from tests.core.helpers import add_task, claim, create_job, succeed, task, token_md
from tests.polling import DEADLINE, eventually
from tests.worker_protocol.conftest import FAR
from tests.worker_protocol.test_session import Session

pytestmark = pytest.mark.postgres


@pytest.fixture
async def signalled_pg(postgres_url: str) -> AsyncIterator[Cluster]:
    """As the `signalled` cluster (tests/worker_protocol/conftest.py), on PostgreSQL."""
    async with running_cluster(postgres_url, lease_ttl=3 * FAR, safety_wait=FAR) as c:
        yield c


async def last_seen(c: Cluster, worker_id: str) -> dt.datetime | None:
    """When the worker's last claim recorded it (None: it has not claimed yet)."""
    async with c.services.core.db.read() as conn:
        seen: dt.datetime | None = (
            await conn.execute(
                select(workers.c.last_seen_at).where(workers.c.worker_id == worker_id)
            )
        ).scalar()
    return seen


class _LongPoll:
    """A ClaimTask waiting for a task (its `wait`)."""

    def __init__(self, c: Cluster) -> None:
        self.call = asyncio.ensure_future(claim(c, "w2", "node2", wait=DEADLINE))

    def waiting(self) -> bool:
        return not self.call.done()

    async def child(self) -> str:
        got = await asyncio.wait_for(self.call, DEADLINE)
        assert got is not None
        return str(got.task.created_by_job_task_uuid)


class _Session:
    """A WorkerSession with a free slot, which its claimer waits to fill."""

    def __init__(self, c: Cluster) -> None:
        self.session = Session(c, "w2", 1)

    def waiting(self) -> bool:
        return not self.session.assignments

    async def child(self) -> str:
        await self.session.until(lambda: bool(self.session.assignments))
        (a,) = self.session.assignments
        await self.session.call.done_writing()
        return str(a.task.created_by_job_task_uuid)


@pytest.mark.parametrize("waiter", ["long_poll", "session"])
async def test_children_of_a_running_task_wake_no_waiting_claim(
    signalled_pg: Cluster, waiter: str
) -> None:
    c = signalled_pg
    signal = c.services.core.signal
    job = await c.jobs.CreateJob(create_job(script="fanout", allow_duplicate=True))
    first = await claim(c)
    own = token_md(first.task_token)

    # w2 is known before it waits: a worker's first claim records a new worker, a change
    # that wakes claims -- its own wait too, which would claim once more.
    assert await claim(c, "w2", "node2") is None
    known = await last_seen(c, "w2")

    async def claimed_since() -> dt.datetime | None:
        seen = await last_seen(c, "w2")
        return seen if seen != known else None

    # A claim waits: nothing is claimable (the first task runs).
    if waiter == "long_poll":
        claimer: _LongPoll | _Session = _LongPoll(c)
    else:
        claimer = _Session(c)
        await claimer.session.open()
    seen = await eventually(claimed_since)

    any_change, claimable = signal.mark(), signal.claim_mark()
    request = task_service_pb2.BatchCreateTasksRequest()
    for n in range(3):
        child = task(job_uuid=job.uuid, sequence=1, created_by_job_task_uuid=first.task.uuid)
        child.parameters["n"] = n
        request.requests.add(job_task=child)
    await c.tasks.BatchCreateTasks(request, metadata=own)
    await add_task(c, job.uuid, metadata=own, sequence=1, created_by_job_task_uuid=first.task.uuid)
    # Watchers hear of the new tasks; claims do not, and the waiting one does not claim
    # again (each claim records its worker as seen).
    assert any_change.is_set()
    assert not claimable.is_set()
    await asyncio.sleep(0.2)
    assert claimer.waiting()
    assert await last_seen(c, "w2") == seen

    # The creator's completion wakes it, and it finds the children (this cluster's
    # periodic wake-ups are beyond the deadline).
    await succeed(c, first)
    assert claimable.is_set()
    assert await claimer.child() == first.task.uuid

    # A task nothing holds back wakes them too.
    claimable = signal.claim_mark()
    await add_task(c, job.uuid, sequence=1)
    assert claimable.is_set()
