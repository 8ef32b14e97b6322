"""PostgreSQL's guarded report groups (issue 16, item 4: no client round trip while a job's row
is held). A group whose tasks' and jobs' rows this process keeps, and whose batches end as
usual, is ONE statement in a transaction of its own (ReportManager._apply_kept): it locks
the jobs, then the tasks, checks them against the kept rows, and writes only if they match
and no job is to move. Each way the guard can fail has a test that fails if that check is
taken out (another process's write, a job's status moved, a job's last task completing), and
one shows that a failed guard wrote nothing and counted nothing (the log budget)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jobtask.domain.reports import Batch, Instruction, Report
from jobtask.domain.ripple import follow_up
from jobtask.domain.statuses import TASK_UNFINISHED, JobStatus, TaskStatus
from jobtask.manager.context import WorkerSpec
from jobtask.manager.reports import ReportManager, Submission
from jobtask.store.database import Database
from jobtask.store.schema import events
from sqlalchemy import select

from tests.conftest import Cluster, running_cluster
from tests.core.helpers import get_job, get_task, job_status
from tests.core.test_kept_tasks import _write_output, kept_rows_are_stored
from tests.engines import counting
from tests.worker_protocol.helpers import count_events, job_with_tasks

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Cluster]:
    async with running_cluster(postgres_url, lease_ttl=30.0) as c:
        yield c


def _batch(seq: int, **fields: object) -> Batch:
    batch = Batch()
    batch.add(Report(seq=seq, **fields))  # type: ignore[arg-type]
    return batch


class _Group:
    """A claim of a job's tasks, and report groups of them through ReportManager.apply_many."""

    def __init__(self, cluster: Cluster, reports: ReportManager) -> None:
        self.cluster = cluster
        self.reports = reports
        self.core = cluster.services.core
        self.system = self.core.settings.system_caller()
        self.leases: dict[str, str] = {}
        self.seq = 0

    async def claim(self, n: int) -> list[str]:
        worker = WorkerSpec(worker_id="w1", node_name="node1", free_slots=n)
        claims = await self.core.claims.claim(self.system, worker, n)
        assert len(claims) == n
        for c in claims:
            self.leases[c.task.uuid] = c.lease_id
        return [c.task.uuid for c in claims]

    async def report(self, uuids: list[str], **fields: object) -> list[object]:
        self.seq += 1
        items = [
            Submission(self.system, uuid, self.leases[uuid], _batch(self.seq, **fields))
            for uuid in uuids
        ]
        return list(await self.reports.apply_many(items))


@pytest.fixture
def group(pg: Cluster) -> _Group:
    return _Group(pg, pg.services.core.runs.reports)


async def test_a_usual_group_is_one_statement_and_writes_what_a_transaction_writes(
    pg: Cluster, group: _Group
) -> None:
    job = await job_with_tasks(pg, "guarded.py", 4)
    uuids = await group.claim(5)
    # The first group of a job in this process is a transaction (it keeps the job's row).
    await group.report(uuids, progress=0.1)
    assert (group.reports.guarded, group.reports.unguarded) == (0, 0)
    with counting(group.core.db) as sent:
        outcomes = await group.report(uuids, progress=0.5, output="half")
    assert group.reports.guarded == 1
    # No BEGIN, no lock statement, no COMMIT: the one guarded statement.
    assert len(sent) == 1 and sent[0].startswith("WITH held_jobs AS"), sent
    assert all(o.verdict.instruction is Instruction.CONTINUE for o in outcomes)  # type: ignore[attr-defined]
    for uuid in uuids:
        task = await get_task(pg, uuid)
        assert (task.progress, task.output) == (0.5, "half")
        assert await count_events(pg, "task_changed", uuid) >= 1
    assert await kept_rows_are_stored(group.core.db) == 5  # type: ignore[arg-type]
    # Four complete as usual, guarded; the job still has one to run.
    await group.report(uuids[:4], progress=1.0, success=True, exit_code=0)
    assert group.reports.guarded == 2
    summary = (await get_job(pg, job)).tasks_summary
    assert (summary.done, summary.running) == (4, 1)
    assert (await get_job(pg, job)).status == job_status("active")


async def test_text_holding_the_separator_is_written_as_given(pg: Cluster, group: _Group) -> None:
    """A group's columns of text go as one joined text unless a value holds its separator
    (flush_sql._PgStatement.array): outputs and logs that hold it, beside ones that do not
    and an empty one, are stored and their events written as given -- in the transaction of
    a job's first group and in a guarded group alike."""
    await job_with_tasks(pg, "separator.py", 2)
    uuids = await group.claim(3)
    sep = "\x1f"
    for round_, guarded in ((1, 0), (2, 1)):
        outputs = [f"plain {round_}", f"a{sep}b {round_}", ""]
        logs = [f"one {round_}\n", f"two{sep}three {round_}\n", f"four {round_}\n"]
        group.seq += 1
        items = [
            Submission(group.system, uuid, group.leases[uuid], _batch(group.seq, output=o, log=x))
            for uuid, o, x in zip(uuids, outputs, logs, strict=True)
        ]
        await group.reports.apply_many(items)
        assert group.reports.guarded == guarded
        for uuid, output, log in zip(uuids, outputs, logs, strict=True):
            task = await get_task(pg, uuid)
            assert task.output == output
            assert task.log.endswith(log), (task.log, log)
        async with pg.services.core.db.read() as conn:
            chunks = [
                row.payload["log"]
                for row in await conn.execute(
                    select(events.c.payload)
                    .where(events.c.task_uuid == uuids[1], events.c.type == "task_log")
                    .order_by(events.c.seq)
                )
            ]
        assert chunks[-1] == logs[1]


async def test_the_last_completion_moves_the_job_in_a_transaction(
    pg: Cluster, group: _Group
) -> None:
    """A completion that leaves its job nothing to run moves the job: the guard refuses it
    (its counts would call for a move), and the transaction completes the job."""
    job = await job_with_tasks(pg, "last.py", 1)
    uuids = await group.claim(2)
    await group.report(uuids, progress=0.5)
    await group.report(uuids[:1], progress=1.0, success=True, exit_code=0)
    assert (group.reports.guarded, group.reports.unguarded) == (1, 0)
    await group.report(uuids[1:], progress=1.0, success=True, exit_code=0, output="b")
    assert group.reports.unguarded == 1
    done = await get_job(pg, job)
    assert done.status == job_status("completed")
    assert (done.tasks_summary.done, done.tasks_summary.running) == (2, 0)


async def test_another_processes_write_fails_the_guard_and_nothing_is_written_twice(
    pg: Cluster, group: _Group, postgres_url: str
) -> None:
    await job_with_tasks(pg, "other.py", 1)
    uuids = await group.claim(2)
    await group.report(uuids, progress=0.25)
    other = Database(postgres_url)
    try:
        await other.transact(lambda conn: _write_output(conn, uuids[0], "theirs"))
    finally:
        await other.dispose()
    before = await count_events(pg, "task_progress", uuids[1])
    await group.report(uuids, progress=0.75)
    assert (group.reports.guarded, group.reports.unguarded) == (0, 1)
    # The transaction wrote the group once: one progress event a task, the other write kept.
    assert await count_events(pg, "task_progress", uuids[1]) == before + 1
    assert (await get_task(pg, uuids[0])).output == "theirs"
    assert (await get_task(pg, uuids[1])).progress == 0.75
    # What this process keeps is what is stored (a guarded write over the other one would
    # have kept the claim's output at the other write's version).
    assert await kept_rows_are_stored(group.core.db) == 2  # type: ignore[arg-type]
    # Its rows kept again: the next group is guarded.
    await group.report(uuids, progress=0.9)
    assert group.reports.guarded == 1


async def test_a_job_moved_elsewhere_fails_the_guard(pg: Cluster, group: _Group) -> None:
    """The kept job row says active; the job was paused meanwhile (a pause request, here
    through JobService): the guard sees its status and the transaction decides, with the
    job as it is."""
    job = await job_with_tasks(pg, "paused.py", 1)
    uuids = await group.claim(2)
    await group.report(uuids, progress=0.25)
    from jobtask.v1 import job_service_pb2 as JS

    await pg.jobs.PauseJob(JS.PauseJobRequest(uuid=job))
    assert (await get_job(pg, job)).status == job_status("pause-requested")
    [told] = await group.report(uuids[:1], progress=0.5)
    assert (group.reports.guarded, group.reports.unguarded) == (0, 1)
    # The worker hears that the job is being paused: its process is to stop.
    assert told.verdict.instruction is Instruction.CANCEL  # type: ignore[attr-defined]


async def test_a_failed_guard_counts_no_log_bytes(pg: Cluster, postgres_url: str) -> None:
    """The log budget is counted in memory as the batches are decided: a group whose guard
    failed, decided again by the transaction, counts its log once."""
    reports = pg.services.core.runs.reports
    reports.settings = dataclasses.replace(reports.settings, task_log_event_limit=100)
    group = _Group(pg, reports)
    await job_with_tasks(pg, "logs.py", 0)
    [uuid] = await group.claim(1)
    await group.report([uuid], progress=0.1)
    other = Database(postgres_url)
    try:
        await other.transact(lambda conn: _write_output(conn, uuid, "theirs"))
    finally:
        await other.dispose()
    await group.report([uuid], log="x" * 60)
    assert group.reports.unguarded == 1
    # 60 + 30 fit in 100 only if the 60 were counted once.
    await group.report([uuid], log="y" * 30)
    assert group.reports.guarded == 1
    await group.report([uuid], exit_code=0, success=True, progress=1.0)
    query = (
        select(events.c.payload)
        .where(events.c.type == "task_log", events.c.task_uuid == uuid)
        .order_by(events.c.seq)
    )
    async with pg.services.core.db.read() as conn:
        logged = "".join(row.payload["log"] for row in await conn.execute(query))
    assert logged == "x" * 60 + "y" * 30


_COUNTS = st.fixed_dictionaries({status: st.integers(0, 5) for status in TaskStatus})


@given(_COUNTS)
def test_the_guards_rule_leaves_an_active_job_where_it_is(counts: dict[TaskStatus, int]) -> None:
    """flush_sql.Guard's rule for a job: none failed, none canceled, some unfinished. Where
    it holds, ripple.follow_up moves no active job (so no settling is left to do)."""
    holds = (
        counts[TaskStatus.FAILED] == 0
        and counts[TaskStatus.CANCELED] == 0
        and sum(counts[s] for s in TASK_UNFINISHED) > 0
    )
    if holds:
        assert follow_up(JobStatus.ACTIVE, counts) is None
