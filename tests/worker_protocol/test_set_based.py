"""Set-based writes (issue 16): a claim of many tasks, and a group of reports ending many
tasks, cost the same number of SQL statements as a claim or a group of a few, on both
stores -- and write exactly what the task-by-task path wrote (the other tests of this
folder check the events, counts and attempts of the same paths)."""

from __future__ import annotations

from typing import Any

import pytest
from jobtask.domain.reports import Batch, Report
from jobtask.manager.context import WorkerSpec
from jobtask.manager.reports import Submission
from sqlalchemy import event

from tests.conftest import Cluster
from tests.core.helpers import create_job, get_job, job_status, task_status
from tests.engines import counting, engines_of
from tests.worker_protocol.helpers import job_with_tasks, watch_events


def _done(seq: int = 1) -> Batch:
    batch = Batch()
    batch.add(Report(seq=seq, progress=1.0, success=True, output="out\n", exit_code=0))
    return batch


async def _claim_and_complete(cluster: Cluster, n: int) -> tuple[list[str], list[str], str]:
    core = cluster.services.core
    system = core.settings.system_caller()
    job = await job_with_tasks(cluster, f"s{n}.py", n - 1)
    worker = WorkerSpec(worker_id=f"w{n}", node_name="node1", free_slots=n)
    with counting(core.db) as claimed:
        claims = await core.claims.claim(system, worker, n)
    assert len(claims) == n
    items = [Submission(system, c.task.uuid, c.lease_id, _done()) for c in claims]
    with counting(core.db) as completed:
        outcomes = await core.runs.reports.apply_many(items)
    assert [o.finished.status for o in outcomes if o.finished] == ["completed"] * n
    return claimed, completed, job


async def test_a_claim_and_a_group_cost_the_same_statements_whatever_their_size(
    cluster: Cluster,
) -> None:
    small_claim, small_group, small_job = await _claim_and_complete(cluster, 3)
    big_claim, big_group, big_job = await _claim_and_complete(cluster, 40)

    assert len(big_claim) == len(small_claim), (small_claim, big_claim)
    assert len(big_group) == len(small_group), "\n".join(map(str, (small_group, big_group)))
    assert big_claim and big_group
    # A handful, not a dozen a task.
    assert len(big_group) <= 12, big_group

    # And the writes are all there: counts, the job's completion, one event per change.
    for uuid, n in ((small_job, 3), (big_job, 40)):
        job = await get_job(cluster, uuid)
        assert job.status == job_status("completed")
        summary = job.tasks_summary
        assert (summary.done, summary.running, summary.todo) == (n, 0, 0)
        events = await watch_events(cluster, uuid, after_seq=0)
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        statuses: dict[str, list[int]] = {}
        for e in events:
            if e.task_uuid and e.HasField("task"):
                statuses.setdefault(e.task_uuid, []).append(e.task.status)
        assert len(statuses) == n
        for changes in statuses.values():
            assert changes == [
                task_status("queued"),
                task_status("active"),
                task_status("completed"),
            ]


async def _one_task_jobs(
    cluster: Cluster, n: int, width: int = 90
) -> tuple[list[str], list[str], list[str]]:
    core = cluster.services.core
    system = core.settings.system_caller()
    # Different scripts: equal jobs would be found as duplicates of the first.
    jobs = [
        (await cluster.jobs.CreateJob(create_job(script=f"j{n}-{i}.py"))).uuid for i in range(n)
    ]
    worker = WorkerSpec(worker_id=f"jw{n}", node_name="node1", free_slots=n)
    with counting(core.db, width) as claimed:
        claims = await core.claims.claim(system, worker, n)
    assert len(claims) == n
    assert {c.job.status for c in claims} == {"active"}
    items = [Submission(system, c.task.uuid, c.lease_id, _done()) for c in claims]
    with counting(core.db, width) as completed:
        await core.runs.reports.apply_many(items)
    return claimed, completed, jobs


async def test_one_task_jobs_start_and_complete_with_the_same_statements_whatever_their_number(
    cluster: Cluster,
) -> None:
    small_claim, small_group, _ = await _one_task_jobs(cluster, 3)
    big_claim, big_group, jobs = await _one_task_jobs(cluster, 30)
    assert big_claim and big_group
    assert len(big_claim) == len(small_claim), "\n".join(map(str, (small_claim, big_claim)))
    assert len(big_group) == len(small_group), "\n".join(map(str, (small_group, big_group)))
    # The claim's jobs are locked by one statement (the first waited for, the others tried);
    # on SQLite by none: their rows are kept from their submission (store/row_cache).
    locking = [s for s in big_claim if s.startswith(("SELECT jobs.", "SELECT first_job."))]
    assert len(locking) == (0 if cluster.services.core.db.is_sqlite else 1), big_claim
    for uuid in jobs:
        job = await get_job(cluster, uuid)
        assert job.status == job_status("completed") and job.success
        assert job.output == "out\n" and job.tasks_summary.done == 1
        events = await watch_events(cluster, uuid, after_seq=0)
        moves = [e.job.status for e in events if e.HasField("job") and not e.task_uuid]
        assert moves[-2:] == [job_status("active"), job_status("completed")]


async def test_a_one_task_jobs_row_is_written_once_when_it_starts_and_once_when_it_ends(
    cluster: Cluster,
) -> None:
    """The job's count shift and its status move are one write of its row, in the flush
    of its task's writes: one statement writes jobs rows in a claim, one in a group of
    completions (on PostgreSQL that flush is the only statement writing anything)."""
    claimed, completed, _ = await _one_task_jobs(cluster, 4, width=100_000)
    for sent in (claimed, completed):
        writing_jobs = [s[:200] for s in sent if "UPDATE jobs" in s]
        assert len(writing_jobs) == 1, writing_jobs


def _reads_tasks(sql: str) -> bool:
    """A read of tasks other than the lock of those a group writes (which names them by
    uuid, through the alias named_tasks: locks.lock_pairs)."""
    return sql.startswith("SELECT job_tasks.") and "named_tasks" not in sql


async def test_one_task_jobs_complete_without_reading_their_tasks_outputs(
    cluster: Cluster,
) -> None:
    """A completing job's output is its tasks' outputs concatenated: when the group wrote
    every task of the job (a one-task job), it is known without reading them back."""
    _, completed, jobs = await _one_task_jobs(cluster, 4, width=100_000)
    # (Besides the group's lock of its tasks, after their jobs': locks.lock_pairs.)
    reading_tasks = [s[:200] for s in completed if _reads_tasks(s)]
    assert reading_tasks == [], reading_tasks
    for uuid in jobs:
        assert (await get_job(cluster, uuid)).output == "out\n"


async def test_a_job_whose_tasks_all_end_in_one_group_gets_their_outputs_in_creation_order(
    cluster: Cluster,
) -> None:
    core = cluster.services.core
    system = core.settings.system_caller()
    uuid = await job_with_tasks(cluster, "all-in-one.py", 3)
    worker = WorkerSpec(worker_id="w-order", node_name="node1", free_slots=4)
    claims = sorted(await core.claims.claim(system, worker, 4), key=lambda c: c.task.id)
    assert len(claims) == 4
    items = []
    # Reported last task first; the second task has no output.
    for i, c in reversed(list(enumerate(claims))):
        batch = Batch()
        output = "" if i == 1 else f"part{i}\n"
        batch.add(Report(seq=1, progress=1.0, success=True, output=output, exit_code=0))
        items.append(Submission(system, c.task.uuid, c.lease_id, batch))
    with counting(core.db, width=100_000) as completed:
        await core.runs.reports.apply_many(items)
    assert not [s[:200] for s in completed if _reads_tasks(s)], completed
    job = await get_job(cluster, uuid)
    assert job.status == job_status("completed")
    assert job.output == "part0\npart2\npart3\n"


async def test_a_claim_of_more_than_a_page_reads_its_candidates_in_one_round(
    cluster: Cluster,
) -> None:
    """A claim's round trips (issue 16): the level of priority, its owners and the level
    below come in one statement, a claim that wants more than a page reads as many
    candidates at once, and on PostgreSQL the node's claim turn is taken by the statement
    that records the worker."""
    core = cluster.services.core
    system = core.settings.system_caller()
    n = 60
    await job_with_tasks(cluster, "page.py", n)
    worker = WorkerSpec(worker_id="wp", node_name="node1", free_slots=n)
    # The worker's first claim also inserts its row.
    assert len(await core.claims.claim(system, worker, 1)) == 1
    with counting(core.db) as claimed:
        claims = await core.claims.claim(system, worker, n)
    assert len(claims) == n
    levels = [s for s in claimed if "priority" in s]
    assert len(levels) == 1 and levels[0].startswith("WITH RECURSIVE lvl"), claimed
    assert not [s for s in claimed if s.startswith("SELECT pg_advisory")], claimed
    if not core.db.is_sqlite:
        # The turn and the worker, the level and its owners, the candidates (whole), their
        # job, the writes with their guard (the guarded claim: jobtask.manager.claims).
        assert len(claimed) == 5, "\n".join(claimed)


async def test_a_flush_sends_a_value_its_rows_share_once(cluster: Cluster) -> None:
    """PostgreSQL: a claim's rows share most of their columns (status, worker, start, lease
    end...); each such column goes as one parameter, not as an array of copies."""
    core = cluster.services.core
    if core.db.is_sqlite:
        pytest.skip("PostgreSQL's flush only: SQLite's sends each statement's rows as they are")
    system = core.settings.system_caller()
    n = 20
    await job_with_tasks(cluster, "shared.py", n - 1)
    worker = WorkerSpec(worker_id="ws", node_name="node1", free_slots=n)
    sent: list[tuple[str, object]] = []

    def record(_conn: object, _cursor: object, statement: str, params: object, *_: object) -> None:
        sent.append((statement, params))

    engines = engines_of(core.db)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        claims = await core.claims.claim(system, worker, n)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
    assert len(claims) == n
    # (The claim's one writing statement: its guard's CTEs come first.)
    [params] = [p for s, p in sent if "job_tasks0 AS (UPDATE" in s]
    assert isinstance(params, tuple)
    # (The job's own row, one, goes as arrays of one.)
    arrays = [a for a in map(_as_array, params) if a is not None and len(a) > 1]
    copies = [a[0] for a in arrays if all(type(v) is type(a[0]) and v == a[0] for v in a)]
    assert not copies, copies
    # What varies still goes as arrays: the tasks' ids, leases, token digests -- the ids and
    # leases each as one text (flush_sql._PgStatement.array), the digests (bytes) as lists.
    assert len([a for a in arrays if len(a) == n]) >= 3, arrays
    joined = [p for p in params if isinstance(p, str) and len(_as_array(p) or ()) == n]
    assert len(joined) >= 2, params


def _as_array(param: object) -> list[Any] | None:
    """The array a flush's parameter stands for: a list; an array literal of integers or a
    joined text (flush_sql._PgStatement.array), split back; None for any other."""
    if isinstance(param, list):
        return param
    if isinstance(param, str) and param.startswith("{") and param.endswith("}"):
        parts = param[1:-1].split(",") if param != "{}" else []
        if all(part.lstrip("-").isdigit() for part in parts):
            return [int(part) for part in parts]
    if isinstance(param, str) and "\x1f" in param:
        return param.split("\x1f")
    return None
