"""Handing tasks to workers: claims within resource limits, leases, and the reaper."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets

from jobtask.domain.errors import Aborted, FailedPrecondition, InvalidArgument, PermissionDenied
from jobtask.domain.limits import NO_LIMITS
from jobtask.domain.scheduling import blocked_workers
from jobtask.domain.statuses import TaskStatus
from jobtask.manager import attempts, lifecycle
from jobtask.manager.context import Caller, Settings, WorkerSpec, utcnow
from jobtask.manager.placement import Placement, limits_of
from jobtask.manager.tasks import Claim
from jobtask.observability import lifecycle as observe
from jobtask.observability.streams import WORKER_SLOTS
from jobtask.store import claims as queries
from jobtask.store import job_writes, leases, locks, row_cache
from jobtask.store.database import Database, mark_changed
from jobtask.store.rows import JobRow, TaskRow
from jobtask.store.task_writes import TaskWrites
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["ClaimManager", "WorkerSpec", "token_digest"]

MAX_CLAIM = 100
# A claimed task's status column (the enum's lookups are Python calls: domain/statuses.py).
_ACTIVE = TaskStatus.ACTIVE.value
# Candidates read per round (at least; a claim that wants more reads as many as it wants,
# so that one round serves it), and rounds per claim: tasks refused by a limit are skipped
# (their whole job, when the limit is the job's), so lower-priority work still gets a turn.
CANDIDATE_PAGE = 50
CLAIM_ROUNDS = 4
REAP_BATCH = 100
MAX_REMEMBERED_OWNERS = 10_000
# Nodes whose guarded-claim turn (an asyncio.Lock) a process keeps.
MAX_NODE_TURNS = 10_000


class _NodeTurn:
    """A node's turn among this process's guarded claims: the lock a claim holds while it
    chooses its tasks, and the tasks chosen by claims whose write is not over yet, which
    the next claims pass over (they would fail each other's guard)."""

    __slots__ = ("lock", "reserved")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.reserved: set[int] = set()


class _Unguarded(Exception):
    """A claim the guarded path (ClaimManager._claim_guarded) leaves to a transaction:
    nothing of it was written but the worker's liveness (`new_worker`: its row was new,
    a change whose mark the transaction makes instead)."""

    def __init__(self, new_worker: bool) -> None:
        super().__init__("left to the claim's transaction")
        self.new_worker = new_worker


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class ClaimManager:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        # Fair share: when each owner was last served (a tick of this process's claims).
        # Kept per process: replicas of TaskService each take turns among owners.
        self._served: dict[str, int] = {}
        self._tick = 0
        # PostgreSQL: this process's guarded claims take turns per node to choose their
        # tasks (what the node's advisory lock does for a claim's transaction), and pass
        # over the tasks chosen by those still writing, so that two of them do not choose
        # the same tasks and fail each other's guard (_NodeTurn).
        self._node_turns: dict[str, _NodeTurn] = {}
        # Claims the guarded path served, and those it left to a transaction; of the
        # guarded ones, those that chose while another's tasks on the node were reserved.
        self.guarded = 0
        self.unguarded = 0
        self.overlapping = 0

    def _node_turn(self, node_name: str) -> _NodeTurn:
        """The node's turn, made if new; the turns of other nodes that no claim holds or has
        tasks reserved in forgotten past MAX_NODE_TURNS."""
        turn = self._node_turns.get(node_name)
        if turn is None:
            turn = self._node_turns[node_name] = _NodeTurn()
            if len(self._node_turns) > MAX_NODE_TURNS:
                for name, other in list(self._node_turns.items()):
                    if not (other.lock.locked() or other.reserved) and name != node_name:
                        del self._node_turns[name]
        return turn

    def _serve(self, owner: str) -> None:
        self._tick += 1
        self._served.pop(owner, None)
        self._served[owner] = self._tick
        if len(self._served) > MAX_REMEMBERED_OWNERS:
            # The least recently served owner is forgotten, which puts it first again.
            del self._served[next(iter(self._served))]

    async def next_runnable_at(self) -> dt.datetime | None:
        """When the first retry backoff still to come ends, for a claim waiting for work.
        A read: one round trip on PostgreSQL, where a write transaction was three."""
        async with self.db.read() as conn:
            return await queries.next_runnable_at(conn, utcnow())

    async def claim(self, caller: Caller, worker: WorkerSpec, max_tasks: int = 1) -> list[Claim]:
        """Claims up to max_tasks runnable tasks for the worker, each with a lease."""
        if not (caller.is_admin or caller.is_system):
            # A claim hands out the task's own token: only workers acting for the manager
            # (worker tokens belong to the system user) or admins may claim other users' work.
            raise PermissionDenied(
                "only workers (the system user's tokens) and admins may claim tasks"
            )
        if not worker.worker_id:
            raise InvalidArgument("worker.worker_id", "is required")
        if not worker.node_name:
            raise InvalidArgument("worker.node_name", "is required")
        if worker.ram_kib < 0:
            raise InvalidArgument("worker.ram_kib", "must not be negative")
        want = max(1, min(max_tasks or 1, worker.free_slots or 1, MAX_CLAIM))
        claims: list[Claim] | None = None
        # Whether a guarded claim that wrote nothing found the worker new.
        new_worker = False
        if self.db.kept_tasks is not None:  # (PostgreSQL)
            try:
                claims = await self._claim_guarded(caller, worker, want)
            except (_Unguarded, Aborted) as exc:
                # Nothing written but the worker's row: the transaction chooses again.
                self.unguarded += 1
                # (A deadlock's Aborted: unknown, and a wake-up too many is harmless.)
                new_worker = exc.new_worker if isinstance(exc, _Unguarded) else True
            else:
                self.guarded += 1
        if claims is None:
            claims = await self._claim_in_transaction(caller, worker, want, new_worker)
        WORKER_SLOTS.seen(worker.worker_id, max(0, (worker.free_slots or 1) - len(claims)))
        return claims

    async def _claim_in_transaction(
        self, caller: Caller, worker: WorkerSpec, want: int, new_worker: bool
    ) -> list[Claim]:
        """The claim as one transaction, the node's turn held throughout (see _choose).
        `new_worker`: a guarded claim that wrote nothing found the worker new."""

        async def run(conn: AsyncConnection) -> list[Claim]:
            if not await self._worker_seen(conn, worker) and new_worker:
                mark_changed(conn)  # (the guarded path's own mark did not commit)
            # Stamped once the node's turn came: a claim that waited for it finds tasks
            # whose creators finished meanwhile (the tasks' own start is stamped after the
            # reads that found them: _choose).
            now = utcnow()
            writes = TaskWrites()
            claims = await self._choose(conn, writes, caller, worker, want, now)
            started = {c.job.id: c.job for c in claims}
            # (Flushes `writes`, with the jobs' moves.)
            settled = await lifecycle.settle_written(
                conn, self.settings, writes, started.values(), now=now
            )
            for c in claims:
                c.job = settled[c.job.id]
            return claims

        return await self.db.transact(run)

    async def _claim_guarded(self, caller: Caller, worker: WorkerSpec, want: int) -> list[Claim]:
        """PostgreSQL: a claim whose job rows are held only while the database runs ONE
        statement. The claim's transaction holds its jobs' rows from their lock to its
        COMMIT, across its reads of the tasks, this process's work on them and three round
        trips; report groups of the same jobs wait for it meanwhile (a fan-out's one job:
        every claim and group in turn).

        Here every statement is a transaction of its own, on one connection: the node's
        turn and the worker's liveness, the candidates (whole) and their jobs, read without
        locks; the starts are made from those rows and written by one guarded statement
        (TaskWrites.flush_guarded, `claim`) that locks the jobs, then the tasks, and
        writes only if every row is as read (a task's version, a job's status and version,
        a moved job's counts) and every task is still runnable once the locks are held.
        Served only when the claim's transaction would decide the same without reads of
        its own: no candidate taken has a resource limit or was failed by this worker, no
        job of theirs blocklisted it, and each job stays or makes its usual move (queued
        -> active, held in the same statement). Otherwise, or when the guard fails,
        _Unguarded: nothing written."""
        # The tasks this claim chose, reserved in its node's turn until its write is over.
        chosen: set[int] = set()
        reserved: set[int] = set()

        async def run(conn: AsyncConnection) -> list[Claim]:
            nonlocal reserved
            # Each statement its own transaction (Database.alone): the turn's advisory
            # lock ends with it (this process's turn is `turn`), the reads see what
            # committed before each of them. The turn is held while the claim chooses
            # (its node's liveness and advisory lock, the candidates), not while it writes:
            # the next claim on the node, a session's overlapping one (server/worker_session)
            # or another worker's, chooses meanwhile, passing over the tasks reserved here.
            turn = self._node_turn(worker.node_name)  # (no await before it is held)
            async with turn.lock:
                new_worker = await self._worker_seen(conn, worker)
                now = utcnow()
                # `want` whole rows, no more: unlike the transaction (_choose), which reads a
                # page to pass over tasks others have locked, this path takes the first `want`
                # or leaves the claim to the transaction (the best first are a prefix of a
                # longer page's, fair share's round robin too).
                rows = await queries.candidates(
                    conn,
                    worker.worker_id,
                    want,
                    now=now,
                    skip_tasks=turn.reserved,
                    turns=self._served if self.settings.fair_share else None,
                    whole=True,
                )
                fresh = queries.whole_rows(rows[:want])
                if not fresh:
                    return []
                chosen.update(task.id for task, _ in fresh)
                reserved = turn.reserved
                if reserved:
                    self.overlapping += 1
                reserved |= chosen
            jobs = await job_writes.jobs_by_id(conn, {task.job_id for task, _ in fresh})
            for task, failed_by_me in fresh:
                job = jobs.get(task.job_id)
                if (
                    job is None
                    or failed_by_me
                    or limits_of(job, task) != NO_LIMITS
                    or worker.worker_id in blocked_workers(job.blocklist)
                ):
                    raise _Unguarded(new_worker)
            # The tasks start now, after the reads that found them runnable (see _choose).
            started = utcnow()
            writes = TaskWrites()
            claims = [
                self._start(conn, writes, caller, jobs[task.job_id], task, worker, started)
                for task, _ in fresh
            ]
            taken = {c.job.id: c.job for c in claims}
            found = {job_id: (job, writes.counts_written(job)) for job_id, job in taken.items()}
            if not lifecycle.settles_without_statements(found):
                raise _Unguarded(new_worker)
            # (A job's usual move, queued -> active, held in `writes`.)
            settled = await lifecycle.settle_many(
                conn, self.settings, found, now=now, writes=writes
            )
            if not await writes.flush_guarded(conn, taken, [t for t, _ in fresh], claim=True):
                raise _Unguarded(new_worker)
            for c in claims:
                c.job = settled[c.job.id]
            return claims

        try:
            claims = await self.db.alone(run)
        finally:
            # Written or not: the tasks are the store's to offer again (or active).
            reserved -= chosen
        for c in claims:
            self._serve(c.task.owner_uuid)
        return claims

    @staticmethod
    async def _worker_seen(conn: AsyncConnection, worker: WorkerSpec) -> bool:
        """The claim's first step (queries.claim_turn): the node's turn, and the worker's
        description and liveness; whether the worker is new, which marks the change (a new
        live node may be what a job's min_nodes waits for)."""
        with row_cache.other_tables(conn):  # (the workers table)
            new_worker = await queries.claim_turn(
                conn,
                worker.worker_id,
                worker.node_name,
                worker.ram_kib,
                worker.cores,
                worker.seen_at or utcnow(),
                tags=worker.tags,
                slots=max(worker.slots, worker.free_slots),
            )
        if new_worker:
            mark_changed(conn)
        return new_worker

    async def _choose(
        self,
        conn: AsyncConnection,
        writes: TaskWrites,
        caller: Caller,
        worker: WorkerSpec,
        want: int,
        now: dt.datetime,
    ) -> list[Claim]:
        """The claim's tasks, started: their rows, counts, events and attempts are held in
        `writes`, written set-based (jobtask.store.task_writes) by the caller's settle, with
        the jobs' moves, once all are chosen. Candidates are taken in
        chunks of what is still wanted: each chunk's new jobs locked in one statement (the
        first job ever is waited for), its tasks locked in another (PostgreSQL)."""

        async def flush() -> None:
            await writes.flush(conn)

        # A placement that counts the node's or the job's active tasks reads them after
        # the starts held so far are written.
        place = Placement(conn, worker, now=now, live=self.settings.live_horizon, before_read=flush)
        locked: dict[int, JobRow] = {}
        skip_jobs: set[int] = set()
        # Passed over: the tasks this process's guarded claims on the node chose and are
        # writing (their guard would fail if taken here first).
        turn = self._node_turns.get(worker.node_name)
        seen: set[int] = set(turn.reserved) if turn is not None else set()
        claims: list[Claim] = []
        page = max(CANDIDATE_PAGE, want)
        for _ in range(CLAIM_ROUNDS):
            rows = await queries.candidates(
                conn,
                worker.worker_id,
                page,
                now=now,
                skip_jobs=skip_jobs,
                skip_tasks=seen,
                turns=self._served if self.settings.fair_share else None,
            )
            waiting = list(rows)
            while waiting and len(claims) < want:
                chunk = waiting[: want - len(claims)]
                del waiting[: len(chunk)]
                # Candidates' columns by position (queries.CANDIDATE_ID: a Row's lookup by
                # name formats an AttributeError), once each; a TaskRow's is a dict lookup.
                seen.update(row[queries.CANDIDATE_ID] for row in chunk)
                job_ids = [row[queries.CANDIDATE_JOB_ID] for row in chunk]
                await self._lock_jobs(conn, job_ids, locked, skip_jobs)
                chunk = [
                    row for row, job_id in zip(chunk, job_ids, strict=True) if job_id in locked
                ]
                fresh = await queries.lock_candidates(conn, worker.worker_id, chunk, now)
                # The tasks start now, after the reads that found them runnable: a creator
                # (a lower sequence) whose completion committed after `now` was stamped but
                # before those reads finished before its children start, not after.
                started = utcnow()
                for task, failed_by_me in fresh:
                    job_id = task.job_id
                    if job_id in skip_jobs:
                        continue
                    job = locked[job_id]
                    limits = limits_of(job, task)
                    blocked = blocked_workers(job.blocklist)
                    if worker.worker_id in blocked and await place.others_can_run_job(
                        blocked, limits
                    ):
                        skip_jobs.add(job_id)
                        continue
                    if failed_by_me and await place.others_can_run(task.id, limits):
                        continue
                    refused = await place.refusal(job_id, limits)
                    if refused is not None:
                        if refused.job_wide:
                            skip_jobs.add(job_id)
                        continue
                    claims.append(self._start(conn, writes, caller, job, task, worker, started))
                    place.started(job_id, limits)
                    self._serve(task.owner_uuid)
            if len(claims) >= want or len(rows) < page:
                break
        return claims

    @staticmethod
    async def _lock_jobs(
        conn: AsyncConnection,
        job_ids: list[int],
        locked: dict[int, JobRow],
        skip_jobs: set[int],
    ) -> None:
        """Locks the jobs of a chunk of candidates (their job ids, in the candidates' order)
        not locked yet. Lock order: the job row, then the task rows; limits count under the
        job's lock, so two claimers (or replicas) cannot both take its last place. Only the
        claim's first job is waited for: candidates of several jobs come in no fixed job
        order, so a busy other job is left to the next claim (skipped here)."""
        new = [job_id for job_id in job_ids if job_id not in locked]
        if not new:
            return
        if not locked:
            first = new[0]
            rest = set(new) - {first}
            if rest:
                got = await locks.lock_job_then_others(conn, first, rest)
            else:
                got = {first: await locks.lock_job(conn, job_id=first)}
        else:
            rest = set(new)
            got = await locks.try_lock_jobs(conn, rest)
        locked.update(got)
        skip_jobs.update(rest - got.keys())

    def _start(
        self,
        conn: AsyncConnection,
        writes: TaskWrites,
        caller: Caller,
        job: JobRow,
        task: TaskRow,
        worker: WorkerSpec,
        now: dt.datetime,
    ) -> Claim:
        token = secrets.token_urlsafe(32)
        lease_id = secrets.token_hex(16)
        expires = now + self.settings.lease_ttl
        attempt = task.attempt + 1
        queued = task
        task = writes.write_task(
            job,
            task,
            {
                "status": _ACTIVE,
                "attempt": attempt,
                "worker_id": worker.worker_id,
                "node_name": worker.node_name,
                "lease_id": lease_id,
                "lease_expires_at": expires,
                "token_digest": token_digest(token),
                "started_at": now,
                "finished_at": None,
                "success": None,
                "progress": 0.0,
            },
            now=now,
            user_uuid=caller.user_uuid,
            client_uuid=caller.client_uuid,
        )
        writes.open_attempt(
            {
                "task_id": task.id,
                "attempt": attempt,
                "lease_id": lease_id,
                "worker_id": worker.worker_id,
                "node_name": worker.node_name,
                "started_at": now,
            }
        )
        observe.task_claimed(conn, queued, task, now)
        return Claim(task, job, token, lease_id, expires)

    async def renew(self, task_uuid: str, lease_id: str) -> tuple[TaskRow, dt.datetime]:
        """Extends a lease; FailedPrecondition if it is no longer the task's lease."""

        async def run(conn: AsyncConnection) -> tuple[TaskRow, dt.datetime]:
            now = utcnow()
            expires = now + self.settings.lease_ttl
            task = await leases.renew_one(conn, task_uuid, lease_id, expires, now)
            if task is None:
                raise FailedPrecondition(f"lease {lease_id} of task {task_uuid} was lost")
            return task, expires

        return await self.db.transact(run)

    async def reap_expired(self) -> int:
        """Ends the attempts whose lease expired without a heartbeat: the seeds' temporary
        failure. Returns how many were reaped."""
        total = 0
        while True:
            reaped, more = await self.db.transact(self._reap_batch)
            total += reaped
            if not more:
                return total

    async def _reap_batch(self, conn: AsyncConnection) -> tuple[int, bool]:
        system = self.settings.system_caller()
        now = utcnow()
        rows = await leases.expired(conn, now, REAP_BATCH)
        reaped = 0
        for uuid, job_id in rows:
            job = await locks.lock_job(conn, job_id=job_id)
            task = await locks.lock_task_row(conn, uuid)
            if task is None or task.lease_expires_at is None:
                continue
            if task.lease_expires_at >= now:
                continue  # renewed meanwhile
            if task.status != TaskStatus.ACTIVE:
                await attempts.close_attempt(conn, task, now, f"ended after {task.status}")
                await attempts.release_lease(conn, task)
                continue
            observe.lease_expired(conn, task)
            await attempts.finish_attempt(
                conn,
                self.settings,
                system,
                job,
                task,
                lease_id=task.lease_id or "",
                exit_code=None,
                signal=None,
                log="",
                outcome_reason="the lease expired without a heartbeat",
            )
            reaped += 1
        return reaped, len(rows) == REAP_BATCH
