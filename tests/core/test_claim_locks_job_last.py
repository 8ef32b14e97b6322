"""On PostgreSQL a claim locks its job's row last (jobtask.manager.claims, _lock_last): its
tasks first, then one statement that locks the job, shifts its counts and appends the events.
What that order must keep, each checked by holding the job's row from another session so the
claim stops between its tasks and its job:

- the claim takes its tasks before its job (and a job whose limits are counted under its
  lock is still locked first);
- a job changed between the claim's unlocked read and its lock (made non-dispatchable, or
  given a task of a lower sequence) starts no task the change forbids;
- a deadlock with a writer that locks the job, then the tasks (a cancel) ends in PostgreSQL
  failing one of them, and the claim, run again, is correct;
- the claim's events take their seq once the job is held: after any event of the job that
  committed while the claim waited (a watcher resuming after that one misses none of them);
- the job's counts are exact.

Report groups the same way: their tasks first, then the job; a job changed meanwhile is read
again (its status is what the worker is told); two groups ending a job's last tasks, each
having read the other's task still active, complete the job once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from jobtask.domain.reports import Batch, Instruction, Report
from jobtask.manager.claims import ClaimManager
from jobtask.manager.context import Settings, WorkerSpec
from jobtask.manager.reports import ReportManager, Submission
from jobtask.store.database import Database
from jobtask.store.migrate import upgrade

from tests.core.raw_rows import JOB_UUID, connect, insert_job, insert_tasks, task_uuid
from tests.polling import DEADLINE, eventually

pytestmark = pytest.mark.postgres

SETTINGS = Settings()
# The flush statement that locks the jobs last (jobtask.store.flush_sql.lock_last).
LOCKS_LAST = "locked AS (SELECT"


class Scene:
    """A migrated database with one queued job of `n` queued tasks (sequence 1, counts set),
    a ClaimManager on it, a `holder` session to hold rows and a `prober` to look."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = Database(url)
        self.claims = ClaimManager(self.db, SETTINGS)

    async def start(self, n: int = 3, constraints: str = "{}") -> None:
        await upgrade(self.db)
        self.holder = await connect(self.url)
        self.prober = await connect(self.url)
        self.job_id = await insert_job(self.holder)
        self.uuids = [task_uuid(i + 1) for i in range(n)]
        await insert_tasks(self.holder, self.job_id, self.uuids, sequence=1)
        await self.holder.execute(
            "UPDATE jobs SET n_queued = $2, runtime_constraints = $3::jsonb WHERE id = $1",
            self.job_id,
            n,
            constraints,
        )

    async def close(self) -> None:
        await self.holder.close()
        await self.prober.close()
        await self.db.dispose()

    def claim(self, slots: int = 1) -> asyncio.Task[list[Any]]:
        worker = WorkerSpec(worker_id="w1", node_name="node1", free_slots=slots)
        return asyncio.create_task(
            self.claims.claim(SETTINGS.system_caller(), worker, max_tasks=slots)
        )

    async def hold_job(self) -> asyncpg.transaction.Transaction:
        held = self.holder.transaction()
        await held.start()
        await self.holder.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", self.job_id)
        return held

    async def waiting_in(self, marker: str) -> bool:
        """Whether a session waits for a lock in a statement whose text holds `marker`."""
        return bool(
            await self.prober.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND position($1 in query) > 0",
                marker,
            )
        )

    async def locked_tasks(self) -> int:
        """How many of the job's tasks another session holds."""
        async with self.prober.transaction():
            free = await self.prober.fetchval(
                "SELECT count(*) FROM (SELECT 1 FROM job_tasks WHERE job_id = $1"
                " FOR UPDATE SKIP LOCKED) AS f",
                self.job_id,
            )
        return len(self.uuids) - int(free)

    async def counts_exact(self) -> dict[str, int]:
        """The job's count columns, checked against its task rows; the counts by status."""
        row = await self.prober.fetchrow("SELECT * FROM jobs WHERE id = $1", self.job_id)
        counted = {
            status: int(n)
            for status, n in await self.prober.fetch(
                "SELECT status, count(*) FROM job_tasks WHERE job_id = $1 GROUP BY status",
                self.job_id,
            )
        }
        for status in ("queued", "active", "completed", "soft-failed", "failed", "canceled"):
            assert row["n_" + status.replace("-", "_")] == counted.get(status, 0), status
        return counted


@pytest.fixture
async def scene(postgres_url: str) -> Any:
    s = Scene(postgres_url)
    yield s
    await s.close()


async def test_a_claim_takes_its_tasks_before_its_job(scene: Scene) -> None:
    await scene.start()
    held = await scene.hold_job()
    claiming = scene.claim(slots=2)
    # Waiting for the job in the statement that locks it last, the claim holds its tasks.
    await eventually(lambda: scene.waiting_in(LOCKS_LAST))
    assert await scene.locked_tasks() == 2
    assert not claiming.done()
    await held.rollback()
    claims = await asyncio.wait_for(claiming, DEADLINE)
    assert len(claims) == 2
    # The job's first claim moved it, from the row as the claim locked it.
    assert all(c.job.status == "active" and c.job.n_active == 2 for c in claims)
    assert await scene.counts_exact() == {"active": 2, "queued": 1}
    status = await scene.prober.fetchval("SELECT status FROM jobs WHERE id = $1", scene.job_id)
    assert status == "active"


async def test_a_job_with_a_counted_limit_is_locked_first(scene: Scene) -> None:
    """max_tasks_per_node counts the job's active tasks under its lock: two claimers must
    not both take its last place, so such a claim waits for the job before any task."""
    await scene.start(constraints='{"max_tasks_per_node": 1}')
    held = await scene.hold_job()
    claiming = scene.claim(slots=2)
    await eventually(lambda: scene.waiting_in("FOR UPDATE"))
    assert not await scene.waiting_in(LOCKS_LAST)
    assert await scene.locked_tasks() == 0
    await held.rollback()
    claims = await asyncio.wait_for(claiming, DEADLINE)
    assert len(claims) == 1  # the limit held
    assert await scene.counts_exact() == {"active": 1, "queued": 2}


async def test_a_job_paused_between_read_and_lock_starts_nothing(scene: Scene) -> None:
    await scene.start()
    held = await scene.hold_job()
    claiming = scene.claim(slots=2)
    await eventually(lambda: scene.waiting_in(LOCKS_LAST))
    # The claim read the job queued; another writer holding it moves it meanwhile.
    await scene.holder.execute(
        "UPDATE jobs SET status = 'paused', version = version + 1 WHERE id = $1", scene.job_id
    )
    await held.commit()
    claims = await asyncio.wait_for(claiming, DEADLINE)
    assert claims == []
    assert await scene.counts_exact() == {"queued": 3}
    assert await scene.prober.fetchval("SELECT count(*) FROM task_attempts") == 0


async def test_a_lower_sequence_added_between_read_and_lock_holds_the_tasks_back(
    scene: Scene,
) -> None:
    """A new task of a lower sequence (written under the job's lock only, no task of the
    claim's touched) makes the claim's tasks wait: the claim runs again, job first, and
    takes the new task instead."""
    await scene.start()
    held = await scene.hold_job()
    claiming = scene.claim(slots=1)
    await eventually(lambda: scene.waiting_in(LOCKS_LAST))
    lower = task_uuid(99)
    await insert_tasks(scene.holder, scene.job_id, [lower], sequence=0)
    await scene.holder.execute(
        "UPDATE jobs SET n_queued = n_queued + 1 WHERE id = $1", scene.job_id
    )
    await held.commit()
    claims = await asyncio.wait_for(claiming, DEADLINE)
    assert [c.task.uuid for c in claims] == [lower]
    assert await scene.counts_exact() == {"active": 1, "queued": 3}


async def test_a_deadlock_with_a_cancel_is_resolved_by_running_the_claim_again(
    scene: Scene,
) -> None:
    """A cancel locks the job, then its queued tasks; the claim holds tasks and waits for the
    job. PostgreSQL fails one of the two (the claim: the holder waits longer before it looks
    for a deadlock); the claim runs again, finds the tasks held or canceled, and starts
    none."""
    await scene.start()
    held = await scene.hold_job()
    await scene.holder.execute("SET LOCAL deadlock_timeout = '60s'")
    claiming = scene.claim(slots=2)
    await eventually(lambda: scene.waiting_in(LOCKS_LAST))
    canceled = await scene.holder.fetchval(
        "WITH c AS (UPDATE job_tasks SET status = 'canceled' WHERE job_id = $1"
        " AND status = 'queued' RETURNING 1) SELECT count(*) FROM c",
        scene.job_id,
    )
    # The claim was the one failed, so the holder's update went through: every task.
    assert canceled == 3
    await scene.holder.execute(
        "UPDATE jobs SET status = 'canceled', n_queued = 0, n_canceled = 3 WHERE id = $1",
        scene.job_id,
    )
    await held.commit()
    assert await asyncio.wait_for(claiming, DEADLINE) == []
    assert await scene.counts_exact() == {"canceled": 3}


async def test_the_claims_events_follow_every_event_committed_while_it_waited(
    scene: Scene,
) -> None:
    await scene.start()
    held = await scene.hold_job()
    claiming = scene.claim(slots=3)
    await eventually(lambda: scene.waiting_in(LOCKS_LAST))
    meanwhile = await scene.holder.fetchval(
        "INSERT INTO events (created_at, job_uuid, type, payload)"
        " VALUES (now(), $1, 'job_changed', '{}') RETURNING seq",
        JOB_UUID,
    )
    await held.commit()
    assert len(await asyncio.wait_for(claiming, DEADLINE)) == 3
    claims_events = await scene.prober.fetch(
        "SELECT seq, type FROM events WHERE job_uuid = $1 AND seq <> $2 ORDER BY seq",
        JOB_UUID,
        meanwhile,
    )
    # Three tasks started, then the job's move to active.
    assert [e["type"] for e in claims_events] == ["task_changed"] * 3 + ["job_changed"]
    assert all(e["seq"] > meanwhile for e in claims_events)


# -- report groups: their tasks (active, leased) are locked first, then the jobs --------------


def ending(claim: Any) -> Submission:
    """A batch ending the claimed task's attempt as the completion rule completes it."""
    batch = Batch()
    batch.add(Report(seq=1, progress=1.0, success=True, exit_code=0))
    return Submission(SETTINGS.system_caller(), claim.task.uuid, claim.lease_id, batch)


def progress(claim: Any) -> Submission:
    batch = Batch()
    batch.add(Report(seq=1, progress=0.5))
    return Submission(SETTINGS.system_caller(), claim.task.uuid, claim.lease_id, batch)


async def test_a_report_group_takes_its_tasks_before_its_job(scene: Scene) -> None:
    await scene.start()
    claims = await scene.claim(slots=2)
    reports = ReportManager(scene.db, SETTINGS)
    held = await scene.hold_job()
    applying = asyncio.create_task(reports.apply_many([ending(c) for c in claims]))
    await eventually(lambda: scene.waiting_in(LOCKS_LAST))
    assert await scene.locked_tasks() == 2
    assert not applying.done()
    await held.rollback()
    outcomes = await asyncio.wait_for(applying, DEADLINE)
    assert [o.finished and o.finished.status for o in outcomes] == ["completed"] * 2
    assert await scene.counts_exact() == {"completed": 2, "queued": 1}


async def test_a_job_held_between_a_groups_read_and_lock_is_what_the_worker_is_told(
    scene: Scene,
) -> None:
    await scene.start()
    [claim] = await scene.claim(slots=1)
    reports = ReportManager(scene.db, SETTINGS)
    held = await scene.hold_job()
    applying = asyncio.create_task(reports.apply_many([progress(claim)]))
    await eventually(lambda: scene.waiting_in(LOCKS_LAST))
    # The group read the job active; another writer holding it asks it to pause meanwhile.
    await scene.holder.execute(
        "UPDATE jobs SET status = 'pause-requested', version = version + 1 WHERE id = $1",
        scene.job_id,
    )
    await held.commit()
    [outcome] = await asyncio.wait_for(applying, DEADLINE)
    assert outcome.verdict.instruction is Instruction.CANCEL, outcome.verdict


async def test_two_groups_ending_a_jobs_last_tasks_complete_it_once(scene: Scene) -> None:
    """Each group, read before the other wrote, counts one task still active: the one that
    locks the job second finds its row written since it read it, reads it again and
    completes the job."""
    await scene.start(n=2)
    first, second = await scene.claim(slots=2)
    reports = [ReportManager(scene.db, SETTINGS) for _ in range(2)]
    held = await scene.hold_job()
    groups = [
        asyncio.create_task(r.apply_many([ending(c)]))
        for r, c in zip(reports, (first, second), strict=True)
    ]

    async def both_waiting() -> bool:
        return bool(
            await scene.prober.fetchval(
                "SELECT count(*) = 2 FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND position($1 in query) > 0",
                LOCKS_LAST,
            )
        )

    await eventually(both_waiting)
    await held.rollback()
    for group in groups:
        await asyncio.wait_for(group, DEADLINE)
    assert await scene.counts_exact() == {"completed": 2}
    job = await scene.prober.fetchrow("SELECT status, output FROM jobs WHERE id = $1", scene.job_id)
    assert job["status"] == "completed"
    moves = await scene.prober.fetch(
        "SELECT payload->>'status' AS status FROM events WHERE job_uuid = $1"
        " AND type = 'job_changed' ORDER BY seq",
        JOB_UUID,
    )
    assert [m["status"] for m in moves] == ["active", "completed"]
