"""Submissions arriving together share one commit (jobtask.store.grouped), and each still
answers as if it had its own transaction."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import grpc
import pytest
from jobtask.domain.errors import AlreadyExists, Unavailable
from jobtask.store.database import Database
from jobtask.store.grouped import GroupedTransactions
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import Cluster
from tests.core.helpers import (
    committer_canceled_before_it_ran,
    create_job,
    get_job,
    job_tasks,
    token_md,
)
from tests.core.raw_rows import connect, lock_waits
from tests.engines import engines_of
from tests.polling import DEADLINE, eventually


@contextlib.contextmanager
def listening(db: Database, name: str, record: Callable[..., None]) -> Iterator[None]:
    """`record` hears event `name` of every engine `db` holds while the block runs."""
    engines = engines_of(db)
    for engine in engines:
        event.listen(engine, name, record)
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, name, record)


@contextlib.contextmanager
def commits(db: Database) -> Iterator[list[int]]:
    """The commits `db` makes while the block runs."""
    seen: list[int] = []
    with listening(db, "commit", lambda conn: seen.append(1)):
        yield seen


async def test_submissions_together_share_a_commit_and_each_gets_its_job(
    cluster: Cluster,
) -> None:
    core = cluster.services.core
    admin = core.settings.system_caller()
    specs = [{"script": f"s{i}.py", "script_parameters": {"i": i}} for i in range(20)]
    with commits(core.db) as made:
        jobs = await asyncio.gather(*(core.jobs.create(admin, spec) for spec in specs))
    assert len({job.uuid for job in jobs}) == 20
    assert len(made) < 20, made  # one commit for the group (a few, were the store to retry)
    for i, job in enumerate(jobs):
        stored = await get_job(cluster, job.uuid)
        assert stored.script == f"s{i}.py"
        assert len(await job_tasks(cluster, job.uuid)) == 1  # its seed task


async def test_a_refused_submission_in_a_group_fails_alone(cluster: Cluster) -> None:
    core = cluster.services.core
    admin = core.settings.system_caller()
    first = await core.jobs.create(admin, {"script": "a.py", "submit_id": "k1"})
    specs = [
        {"script": "b.py"},
        {"script": "other.py", "submit_id": "k1"},  # the same submit_id, another job
        {"script": "a.py", "submit_id": "k1"},  # the same submission again
        {"script": "c.py"},
    ]
    answers = await asyncio.gather(
        *(core.jobs.create(admin, spec) for spec in specs), return_exceptions=True
    )
    assert isinstance(answers[1], AlreadyExists)
    assert answers[2].uuid == first.uuid  # type: ignore[union-attr]
    for answer in (answers[0], answers[3]):
        assert not isinstance(answer, BaseException)
        assert (await get_job(cluster, answer.uuid)).script in ("b.py", "c.py")
    with pytest.raises(AlreadyExists):
        await core.jobs.create(admin, {"script": "other.py", "submit_id": "k1"})


@contextlib.contextmanager
def job_inserts(db: Database) -> Iterator[list[str]]:
    """The INSERT statements into jobs that `db` sends while the block runs."""
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO JOBS"):
            seen.append(statement)

    with listening(db, "before_cursor_execute", record):
        yield seen


async def test_one_callers_submissions_together_share_their_statements(
    cluster: Cluster,
) -> None:
    """Concurrent CreateJobs of one caller are written as one BatchCreateJobs would be: one
    INSERT of jobs for the group, not one each; each call still gets its own job, a second
    submission of a job a group already created answers with that job."""
    core = cluster.services.core
    admin = core.settings.system_caller()
    specs = [{"script": f"s{i}.py", "script_parameters": {"i": i}} for i in range(20)]
    specs.append({"script": "s3.py", "script_parameters": {"i": 3}})  # a duplicate of #3
    with job_inserts(core.db) as inserts:
        jobs = await asyncio.gather(*(core.jobs.create(admin, spec) for spec in specs))
    assert len(inserts) < 10, len(inserts)  # one per group (20 before: one per call)
    assert len({job.uuid for job in jobs}) == 20
    assert jobs[20].uuid == jobs[3].uuid
    for i, job in enumerate(jobs[:20]):
        stored = await get_job(cluster, job.uuid)
        assert stored.script == f"s{i}.py"
        assert len(await job_tasks(cluster, job.uuid)) == 1


async def test_a_submission_whose_group_is_canceled_fails_unavailable(cluster: Cluster) -> None:
    """The committer is canceled (as the server stops) while a CreateJob waits on it: the
    call fails UNAVAILABLE, which clients retry, not CANCELLED (as if it had given up)."""
    core = cluster.services.core
    if core.db.is_sqlite:
        pytest.skip("PostgreSQL only: a held table keeps the group's committer running")
    holder = await connect(core.db.url)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")  # reads pass, writes wait
            call = asyncio.ensure_future(
                cluster.jobs.CreateJob(
                    create_job(script="late.py"), metadata=token_md(cluster.root_token or "")
                )
            )
            committer = await eventually(lambda: core.jobs._submissions.running)
            await eventually(lambda: lock_waits(holder))  # (its statement waits)
            committer.cancel()
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                # (Bounded: with the committer's waiters canceled, the call never ended.)
                await asyncio.wait_for(call, DEADLINE)
    finally:
        await holder.close()
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value
    assert "shutting down" in (failed.value.details() or "")


async def test_callers_of_a_committer_canceled_before_it_ran_are_answered(
    cluster: Cluster,
) -> None:
    """A committer canceled before its first step (as the server stops) never runs its own
    cleanup: its callers are still told UNAVAILABLE, and the next item starts another."""

    async def together(conn: AsyncConnection, items: list[int]) -> list[int]:
        await conn.execute(text("SELECT 1"))
        return items

    grouped: GroupedTransactions[int, int] = GroupedTransactions(cluster.services.core.db, together)
    waiting = await committer_canceled_before_it_ran(grouped, grouped.run(1))
    with pytest.raises(Unavailable, match="shutting down"):
        await asyncio.wait_for(waiting, DEADLINE)
    assert grouped.running is None
    assert await asyncio.wait_for(grouped.run(2), DEADLINE) == 2
