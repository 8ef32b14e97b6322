"""What a worker reports over RunTask, applied one coalesced batch per transaction.

Each batch is applied under the job's and the task's row locks (so the job's events stay in
commit order for watchers), only while the worker's lease is the task's current one, and
renews that lease. The exit, if the batch holds it, ends the attempt in the same transaction:
whatever the worker is told after a commit is durable.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobtask.domain.derived import task_on_enter
from jobtask.domain.errors import Aborted, DomainError, NotFound, Unavailable
from jobtask.domain.reports import (
    Batch,
    Instruction,
    Verdict,
    log_chunks,
    log_head,
    log_tail,
    log_truncated,
    verdict,
)
from jobtask.domain.rules import decide_exit
from jobtask.domain.statuses import (
    JOB_HOLDING,
    JobStatus,
    JobStatuses,
    TaskStatus,
    TaskStatuses,
    check_task_move,
)
from jobtask.domain.uuids import TASK_INFIX, check_uuid
from jobtask.manager import attempts, lifecycle
from jobtask.manager.attempts import check_readable, check_task_owner
from jobtask.manager.context import Caller, Settings, utcnow
from jobtask.observability import lifecycle as observe
from jobtask.store import claims as queries
from jobtask.store import feed, leases, locks, row_cache
from jobtask.store.database import Database, after_commit
from jobtask.store.rows import JobRow, TaskRow
from jobtask.store.task_writes import TaskWrites
from sqlalchemy.ext.asyncio import AsyncConnection

T = TaskStatus
# Its members, looked up at a third of the cost on the completion's path (statuses.py).
TS = TaskStatuses
_COMPLETED = TaskStatus.COMPLETED.value


@dataclass(frozen=True)
class Submission:
    """One stream's batch, to be applied under the stream's lease."""

    caller: Caller
    task_uuid: str
    lease_id: str
    batch: Batch
    # Also record that the task's worker is live (once a heartbeat interval per stream).
    worker_alive: bool = False


@dataclass(frozen=True)
class Outcome:
    """Where a lease stands after a batch (or a check)."""

    verdict: Verdict
    lease_expires_at: dt.datetime | None = None
    # Set when the attempt ended: the task as decided.
    finished: TaskRow | None = None


class _Unkept(Exception):
    """A report group the guarded path (ReportManager._apply_kept) cannot serve: a row not
    kept, an unusual end, or a guard that failed. Nothing of it was written."""


# Active jobs whose row this process keeps for the guarded path (ReportManager._job_rows): a
# row is a few KiB (its JSON columns), so a few MiB at most.
_KEPT_JOBS = 1_000

# Attempts whose log-event bytes are counted at once, in memory (a lease reaped without an
# exit leaves its entry behind until this many newer ones push it out).
_LOG_BUDGETS = 100_000


class ReportManager:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        # lease id -> [bytes stored as TASK_LOG events, bytes dropped past the limit]. Kept
        # by this process: an attempt whose stream moves to another replica, or outlives a
        # restart, starts counting again there.
        self._log_bytes: OrderedDict[str, list[int]] = OrderedDict()
        # PostgreSQL: each job's row as this process's last report group left it, by id,
        # for the guarded path: of it the usual ends read only its id, uuid and status, and
        # the guard checks its status under the lock (the rest may be stale).
        self._job_rows: dict[int, JobRow] = {}
        # Report groups the guarded path served, and those it left to a transaction.
        self.guarded = 0
        self.unguarded = 0

    def _log_events(self, lease_id: str, text: str, ends: bool) -> list[str]:
        """The log events to store for one batch of an attempt: its text up to the
        attempt's limit, then (with its exit) one marker saying how much was dropped."""
        counted = self._log_bytes.get(lease_id)
        if not text and (counted is None or not ends):
            # Nothing to store, nothing counted to mark (the usual end: no log at all).
            return []
        if counted is None:
            counted = self._log_bytes[lease_id] = [0, 0]
            while len(self._log_bytes) > _LOG_BUDGETS:
                self._log_bytes.popitem(last=False)
        # Once a byte was dropped, all that follows is: the stored events stay a prefix.
        room = self.settings.task_log_event_limit - counted[0] if not counted[1] else 0
        kept, dropped = log_head(text, room)
        counted[0] += len(kept.encode())
        counted[1] += dropped
        events = log_chunks(kept) if kept else []
        if ends:
            if counted[1]:
                events.append(log_truncated(counted[1]))
            self._log_bytes.pop(lease_id, None)
        return events

    async def check(self, caller: Caller, task_uuid: str, lease_id: str) -> Outcome:
        """The verdict for a lease, read without writing (first message, cancel watch)."""
        check_uuid(task_uuid, TASK_INFIX, "task_uuid")
        async with self.db.read() as conn:
            state = await leases.lease_state(conn, task_uuid)
        if state is None:
            raise NotFound(f"task {task_uuid} not found")
        check_task_owner(caller, task_uuid, state.owner_uuid)
        held = state.lease_id == lease_id and leases.live(state.expires_at, utcnow())
        return Outcome(
            verdict(T(state.status), JobStatus(state.job_status), held),
            state.expires_at if held else None,
        )

    async def apply_many(self, items: Sequence[Submission]) -> list[Outcome]:
        """Applies the batches of several streams at once: a group commit.

        PostgreSQL, when every task's row and its job's are kept (their last write was this
        process's) and each batch ends as usual (progress, output, a completion that moves
        no job): _apply_kept, ONE statement, its own transaction. Otherwise, or when that
        statement's guard fails, _apply_locked_group's transaction."""
        kept = self._kept_rows(items)
        if kept is not None:
            try:
                outcomes = await self.db.alone(lambda conn: self._apply_kept(conn, items, *kept))
            except Unavailable:
                raise
            except (_Unkept, Aborted, DomainError):
                # Nothing written (a refusal is told item by item by the transaction).
                self.unguarded += 1
            else:
                self.guarded += 1
                return outcomes
        return await self._apply_locked_group(items)

    def _kept_rows(
        self, items: Sequence[Submission]
    ) -> tuple[dict[str, TaskRow], dict[int, JobRow]] | None:
        """The items' tasks' kept rows by uuid and their jobs' by id, if the guarded path
        may serve the group: PostgreSQL, every row kept, every job active, no item also
        recording its worker live (RunTask's: a statement of its own)."""
        cache = self.db.kept_tasks
        if cache is None:
            return None
        tasks: dict[str, TaskRow] = {}
        jobs: dict[int, JobRow] = {}
        for item in items:
            task = cache.rows.get(item.task_uuid)
            if task is None or item.worker_alive:
                return None
            job = self._job_rows.get(task.job_id)
            if job is None or job.status is not JobStatuses.ACTIVE:
                return None
            tasks[item.task_uuid] = task
            jobs[job.id] = job
        return tasks, jobs

    async def _apply_kept(
        self,
        conn: AsyncConnection,
        items: Sequence[Submission],
        tasks: dict[str, TaskRow],
        jobs: dict[int, JobRow],
    ) -> list[Outcome]:
        """apply_many from the kept rows, its writes ONE guarded statement (TaskWrites.
        flush_guarded) on a connection outside a transaction (Database.alone): the jobs'
        rows are held while the database runs it, not across this process's work and round
        trips. The writes are those _apply_locked_group would make on the same rows, in the
        same order; the guard checks under the locks that the rows are those rows and that
        no job is to move. _Unkept (nothing written) if an item ends unusually or the guard
        fails; the log counts taken meanwhile are put back."""
        now = utcnow()
        writes = TaskWrites()
        rows = dict(tasks)
        # Each lease's log count as it was (copied: _log_events adds to it in place).
        saved = {item.lease_id: list(self._log_bytes.get(item.lease_id) or ()) for item in items}
        decided: list[Outcome] = [Outcome(verdict(None, None, False))] * len(items)
        try:
            # In _lock's order: by job id, then the items' order.
            order = sorted(range(len(items)), key=lambda i: (rows[items[i].task_uuid].job_id, i))
            for i in order:
                item = items[i]
                task = rows[item.task_uuid]
                decided[i], rows[item.task_uuid] = await self._apply_locked(
                    conn, item, jobs[task.job_id], task, now, writes, direct=False
                )
            if not await writes.flush_guarded(conn, jobs, tasks.values()):
                raise _Unkept("a row changed, or a job is to move")
        except BaseException:
            for lease, counts in saved.items():
                if counts:
                    self._log_bytes[lease] = counts
                else:
                    self._log_bytes.pop(lease, None)
            raise
        return decided

    async def _apply_locked_group(self, items: Sequence[Submission]) -> list[Outcome]:
        """apply_many in one transaction.

        Every job is locked in one statement (in job id order, the order of every writer
        that holds several job rows, so two group commits cannot deadlock) and its tasks in
        another; the usual writes (progress, output, an exit that completes the task) are
        held in a TaskWrites and written set-based (jobtask.store.task_writes), so the group
        costs the same few statements whatever its size; each job with an ended task is
        settled once, after all of the group's writes. Only the unusual ends (a failure, a
        retry, a hand-back, a task canceled meanwhile) run their own statements. The result
        is that of applying the items one after another, in their order, except that a job
        moved by one item's ending (a task failed for good) moves after the others.
        A DomainError of any item ends the whole transaction: the caller retries each item
        alone (jobtask.server.group_commit.GroupCommit)."""

        async def run(conn: AsyncConnection) -> list[Outcome]:
            now = utcnow()
            writes = TaskWrites()
            lost = Outcome(verdict(None, None, False))
            outcomes = [lost] * len(items)
            alive: set[str] = set()
            ended_jobs: list[JobRow] = []
            locked = await self._lock(conn, items)
            for job, tasks, mine in locked:
                ended = False
                for i in mine:
                    item = items[i]
                    task = tasks.get(item.task_uuid)
                    if task is None:  # deleted after the first read
                        continue
                    held = task.lease_id == item.lease_id
                    if item.worker_alive and held and task.worker_id:
                        alive.add(task.worker_id)
                    outcome, task = await self._apply_locked(conn, item, job, task, now, writes)
                    tasks[item.task_uuid] = task
                    outcomes[i] = outcome
                    ended = ended or outcome.finished is not None
                if ended:
                    ended_jobs.append(job)
            # (Flushes `writes`, with the jobs' moves.)
            settled = await lifecycle.settle_written(
                conn, self.settings, writes, ended_jobs, now=now
            )
            if self.db.kept_tasks is not None:
                left = {job.id: settled.get(job.id, job) for job, _, _ in locked}
                after_commit(conn, lambda: self._keep_jobs(left))
            with row_cache.other_tables(conn):  # (the workers table)
                for worker_id in sorted(alive):
                    await queries.worker_alive(conn, worker_id, now)
            return outcomes

        return await self.db.transact(run)

    def _keep_jobs(self, rows: Mapping[int, JobRow]) -> None:
        """Jobs' rows as a committed report group left them (for _kept_rows): the active
        ones; a job that finished or holds its tasks is dropped."""
        kept = self._job_rows
        for job_id, row in rows.items():
            # Taken out first, so that a row kept again goes to the end (kept_tasks' way).
            kept.pop(job_id, None)
            if row.status is JobStatuses.ACTIVE:
                kept[job_id] = row
        row_cache.trim(kept, _KEPT_JOBS)

    async def _lock(
        self, conn: AsyncConnection, items: Sequence[Submission]
    ) -> list[tuple[JobRow, dict[str, TaskRow], list[int]]]:
        """Locks the items' jobs and their tasks, in one statement; for each job (in id
        order): the job, its tasks by uuid, and the indexes of its items. (A task deleted
        since the first read is left out: its item is lost.)"""
        mine: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            mine.setdefault(item.task_uuid, []).append(i)
        out: list[tuple[JobRow, dict[str, TaskRow], list[int]]] = []
        for job, task in await locks.lock_pairs(conn, mine):
            if not out or out[-1][0].id != job.id:
                out.append((job, {}, []))
            out[-1][1][task.uuid] = task
            out[-1][2].extend(mine[task.uuid])
        for _, _, indexes in out:
            indexes.sort()
        return out

    async def _apply_locked(
        self,
        conn: AsyncConnection,
        item: Submission,
        job: JobRow,
        task: TaskRow,
        now: dt.datetime,
        writes: TaskWrites,
        *,
        direct: bool = True,
    ) -> tuple[Outcome, TaskRow]:
        """One stream's batch, its job and task locked; the job is settled by the caller.
        Returns the outcome and the task as it now is (or will be, once `writes` is
        flushed). `direct` False: _Unkept rather than an unusual end's own statements."""
        if task.lease_id != item.lease_id or not leases.live(task.lease_expires_at, now):
            # Another attempt's lease, or this one expired (the reaper ends its attempt):
            # nothing of the batch counts.
            return Outcome(verdict(task.status, job.status, False)), task
        check_readable(item.caller, task)
        batch = item.batch
        caller = item.caller
        changes, event = self._reported(job, task, batch, now, writes)
        renewed = changes["lease_expires_at"]
        if batch.exit is None:
            task = writes.write_task(
                job,
                task,
                changes,
                now=now,
                user_uuid=caller.user_uuid,
                client_uuid=caller.client_uuid,
                event=event,
            )
            held = verdict(task.status, job.status, True)
            return Outcome(held, renewed), task
        if task.status == TS.ACTIVE and not batch.exit.handed_back:
            completed = self._completed(job, task, item, changes, now, writes)
            if completed is not None:
                # (What the log reads of the attempt -- its start, worker, number -- is
                # not among a report's changes.)
                observe.attempt_ended(
                    conn,
                    task,
                    completed,
                    now,
                    exit_code=batch.exit.exit_code,
                    signal=batch.exit.signal,
                )
                return Outcome(_ended(completed), renewed, finished=completed), completed
            # The usual end otherwise: the last report and the decision are one write and
            # one event.
            reported, final = changes, None
        else:
            # Canceled meanwhile, or handed back: the report is written first, as it is.
            final = writes.write_task(
                job,
                task,
                changes,
                now=now,
                user_uuid=caller.user_uuid,
                client_uuid=caller.client_uuid,
                event=event,
            )
            reported = None
        if not direct:
            raise _Unkept("an unusual end")
        # The unusual ends read and write rows of their own: what is held goes first.
        await writes.flush(conn)
        writes.mark_direct(job.id)
        decided = await attempts.finish_attempt(
            conn,
            self.settings,
            item.caller,
            job,
            final or task,
            lease_id=item.lease_id,
            exit_code=batch.exit.exit_code,
            signal=batch.exit.signal,
            log=(changes.get("log") if "log" in changes else task.log) or "",
            handed_back=batch.exit.handed_back,
            reported=reported,
            settle=False,
        )
        return Outcome(_ended(decided), renewed, finished=decided), decided

    def _completed(
        self,
        job: JobRow,
        task: TaskRow,
        item: Submission,
        reported: dict[str, Any],
        now: dt.datetime,
        writes: TaskWrites,
    ) -> TaskRow | None:
        """The usual end of an active task, held in `writes`: its process exited after
        reporting success and progress 1.0, so the completion rule completes it (as
        attempts.finish_attempt would, with the same writes and event). None when the rule
        decides anything else."""
        decision = decide_exit(
            reported.get("progress", task.progress),
            reported.get("success", task.success),
            task.failed_count,
            self.settings.retry_limit,
            job_holding=job.status in JOB_HOLDING,
        )
        if decision.status is not TS.COMPLETED or decision.temporary_failure:
            return None
        exit_ = item.batch.exit
        assert exit_ is not None
        writes.close_attempt(
            task,
            ended=now,
            outcome=_COMPLETED,
            exit_code=exit_.exit_code,
            signal=exit_.signal,
            lease_expires=task.lease_expires_at,
        )
        check_task_move(TS.ACTIVE, TS.COMPLETED)
        return writes.write_task(
            job,
            task,
            {**reported, **task_on_enter(TS.COMPLETED, now=now)},
            now=now,
            user_uuid=item.caller.user_uuid,
            client_uuid=item.caller.client_uuid,
        )

    def _reported(
        self, job: JobRow, task: TaskRow, batch: Batch, now: dt.datetime, writes: TaskWrites
    ) -> tuple[dict[str, Any], str | None]:
        """The task's column changes for a batch (lease renewed), and the event to append
        with them; the batch's log chunks are held in `writes` here."""
        changes: dict[str, Any] = {"lease_expires_at": now + self.settings.lease_ttl}
        # A canceled task's process is being stopped: its last log lines still count, its
        # progress and results no longer do.
        reported = batch.changes if task.status == TS.ACTIVE else {}
        changes.update(reported)
        if batch.log:
            changes["log"] = log_tail(task.log, batch.log)
        for chunk in self._log_events(task.lease_id or "", batch.log, batch.exit is not None):
            writes.event(job.uuid, feed.TASK_LOG, {"log": chunk}, task_uuid=task.uuid, now=now)
        if "output" in reported or "success" in reported:
            event: str | None = feed.TASK_CHANGED
        elif "progress" in reported:
            event = feed.TASK_PROGRESS
        else:
            event = None
        return changes, event

    async def heartbeat(self, task_uuid: str, lease_id: str, *, worker_alive: bool) -> Outcome:
        """A batch with nothing but liveness (Batch.is_heartbeat): renews the lease alone,
        one UPDATE, no lock, no event, no version bump. `worker_alive`: also record that
        the task's worker is live."""

        async def run(conn: AsyncConnection) -> Outcome:
            now = utcnow()
            expires = now + self.settings.lease_ttl
            renewed = await leases.heartbeat(conn, task_uuid, lease_id, expires, now)
            if renewed is None:
                return Outcome(verdict(None, None, False))
            if worker_alive and renewed.worker_id:
                await queries.worker_alive(conn, renewed.worker_id, now)
            return Outcome(verdict(T(renewed.status), JobStatus(renewed.job_status), True), expires)

        return await self.db.transact(run)

    async def renew_session(self, held: Mapping[str, str], worker_id: str) -> dict[str, Outcome]:
        """A session's heartbeat: renews every lease of `held` (task uuid -> lease id) in
        one statement and records that the worker is live. The outcome of each task (a
        lease not found is lost: STOP)."""

        async def run(conn: AsyncConnection) -> dict[str, Outcome]:
            now = utcnow()
            found = await leases.renew(conn, held, now + self.settings.lease_ttl, now)
            if worker_id:
                await queries.worker_alive(conn, worker_id, now)
            return _outcomes(held, found)

        return await self.db.transact(run)

    async def session_states(self, held: Mapping[str, str]) -> dict[str, Outcome]:
        """Where each of a session's leases stands, read in one statement (cancel watch)."""
        async with self.db.read() as conn:
            found = await leases.states(conn, held)
        return _outcomes(held, found)

    async def abandon(self, caller: Caller, task_uuid: str, lease_id: str, reason: str) -> None:
        """The worker's stream was refused for an invalid message, its task's process not
        reported: the seeds' temporary failure, if the lease is still this worker's. (A
        stream merely cut leaves its lease to its ttl: WorkerSession's _abandon_held.)"""

        async def run(conn: AsyncConnection) -> None:
            try:
                job, task = await locks.lock_task(conn, task_uuid)
            except NotFound:
                return
            if task.lease_id != lease_id:
                return
            self._log_bytes.pop(lease_id, None)
            await attempts.finish_attempt(
                conn,
                self.settings,
                caller,
                job,
                task,
                lease_id=lease_id,
                exit_code=None,
                signal=None,
                log=task.log or "",
                outcome_reason=reason,
            )

        await self.db.transact(run)


# What a worker is told once its attempt ended, by the task's status: one Verdict each,
# made once (a StrEnum's formatting and a frozen dataclass's construction, per task, cost
# more than the rest of its outcome).
_ENDED = {
    status: Verdict(Instruction.STOP, f"the attempt ended: the task is {status}") for status in T
}


def _ended(task: TaskRow) -> Verdict:
    return _ENDED[task.status]


def _outcomes(held: Mapping[str, str], found: Sequence[leases.LeaseState]) -> dict[str, Outcome]:
    by_uuid = {state.task_uuid: state for state in found}
    out: dict[str, Outcome] = {}
    for uuid in held:
        state = by_uuid.get(uuid)
        if state is None:
            out[uuid] = Outcome(verdict(None, None, False))
        else:
            told = verdict(T(state.task_status), JobStatus(state.job_status), True)
            out[uuid] = Outcome(told, state.expires_at)
    return out
