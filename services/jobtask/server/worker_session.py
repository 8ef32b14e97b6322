"""WorkerSession: one stream per worker process, for all of its tasks.

The worker side:

- The first message carries `open` (the worker's identity and capacity: `free_slots` is the
  number of tasks the server may assign before any credit). Only workers (the system user's
  tokens) and admins may open a session, as only they may claim.
- Later messages carry `credits` (slots freed), `reports` (RunTaskRequest messages, each
  naming its task and lease: progress, output, success, log chunks, the exit) for any number
  of tasks, and `heartbeat` (renew every lease of the session).

The server side runs four loops per session (five on PostgreSQL):

- the claimer: while the worker has credit, claims up to that many tasks in one claim (on
  PostgreSQL, with nothing else in progress, half the worker's slots, so that claims
  overlap the worker's runs and the writer's flushes) and pushes them in one message;
  when nothing is runnable it sleeps on the process's change signal (in-process commits,
  LISTEN/NOTIFY on PostgreSQL, the feed poll on SQLite), or until the earliest retry
  backoff ends -- the worker never polls. On PostgreSQL a busy session has a second
  claimer, claiming while the first one's claim is in progress (_overlap);
- the writer: hands every report received since its last commit to the process's group
  commit (jobtask.server.group_commit) as one batch per task, so a session's reports share
  a transaction with each other and with other streams'; then acknowledges each task
  (`acked_seq`, its instruction, the renewed lease, the decided task after its exit).
  Output, success and exits are applied at once; progress, logs and attachments at most
  every COALESCE_SECONDS. A heartbeat renews all of the session's leases in one statement;
- the watcher: on the change signal (at most every STATUS_CHECK_SECONDS) reads where all of
  the session's leases stand in one statement and sends CANCEL or STOP for those that
  changed, so a cancel reaches an idle worker without waiting for its next message;
- the reader: turns messages into credits, pending batches and heartbeats.

A worker that promises a message every `heartbeat_interval` (WorkerInfo's field; the Python
and TypeScript agents do) and then falls silent for SILENCE_INTERVALS of them -- stopped,
hung, its host frozen, while the kernel keeps its connection open -- is assigned nothing
until it speaks again, and its registry row's last_seen_at is its own last message, so it
turns lost. Without the promise (older workers) the claimer cannot tell it from an idle one.

A session refused for an invalid message ends its leases' attempts as a temporary failure.
One that is cut (the worker gone, or only its connection: a proxy restarted, a network blip),
that ends because this server is shutting down, or because the store failed, leaves the
leases to their ttl: the worker reattaches them to its next session by reporting on them,
and the reaper ends the attempts of one that never comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from google.protobuf import duration_pb2
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from jobtask.domain.errors import (
    Aborted,
    DomainError,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
)
from jobtask.domain.query import parse_select
from jobtask.domain.reports import Batch, Instruction, verdict
from jobtask.domain.resources import TASK_ATTRS
from jobtask.domain.uuids import TASK_INFIX, check_uuid
from jobtask.manager.claims import ClaimManager, WorkerSpec
from jobtask.manager.context import Caller, utcnow
from jobtask.manager.reports import Outcome, Submission
from jobtask.manager.tasks import Claim
from jobtask.observability.logs import EVENTS, emit
from jobtask.observability.metrics import SILENT_SESSIONS
from jobtask.server.assignments import BACKOFF_SLACK, assignments_pb, worker_spec
from jobtask.server.convert import stamp
from jobtask.server.errors import cancel_not_asked_for
from jobtask.server.run_task import (
    _INSTRUCTION_PB,
    COALESCE_SECONDS,
    STATUS_CHECK_SECONDS,
    RunTasks,
    report_from,
)
from jobtask.server.task_messages import SelectedTasks, TaskMessages
from jobtask.v1 import task_service_pb2

log = logging.getLogger(__name__)

# Reports of one message beyond this are refused (a message is one batch of the worker's).
MAX_REPORTS = 1000
# At most this many tasks per claim (the claim manager's own bound).
MAX_CLAIM = 100
# How long a claim for a few credits waits for more (see _claim).
CREDIT_GATHER_SECONDS = 0.005
# On PostgreSQL one claim takes at most 1/CLAIM_PARTS of the worker's slots (Session._part).
CLAIM_PARTS = 2
# A session with credit but nothing runnable re-checks at least this often.
IDLE_RECHECK = 5.0
# A worker that promised a message every heartbeat_interval and sent none for this many
# intervals is assigned nothing until it speaks again (see Session._silent).
SILENCE_INTERVALS = 2
# A heartbeat of a session holding no lease records the worker's liveness in the registry
# at most this often, or four times within the live horizon (claims record it too): an idle
# fleet's heartbeats cost no write each.
IDLE_SEEN_EVERY = 5.0

Response = task_service_pb2.WorkerSessionResponse


def claim_part(slots: int, free_slots: int, *, split: bool) -> int:
    """The most one claim of a session takes: all the worker's slots (`slots`, or the
    opening message's `free_slots` if more; MAX_CLAIM at most) or, `split`, one part of
    CLAIM_PARTS of them (see Session._part). The worker answers each message of
    assignments with a message of its own (jobtask.worker.session), so parts handed out
    in messages of their own run as groups that take turns. bench.bare, the store-less
    server, hands out its assignments in these parts too: its claim costs nothing and
    overlaps everything, the split case."""
    whole = max(1, min(max(slots, free_slots), MAX_CLAIM))
    return -(-whole // CLAIM_PARTS) if split else whole


class _Closed(Exception):
    """The reader reached the end of the worker's messages."""


class WorkerSessions:
    """What every WorkerSession of one process shares."""

    def __init__(self, runs: RunTasks, claims: ClaimManager) -> None:
        self.runs = runs
        self.claims = claims
        # Claims of this process's sessions in progress (see Session._part).
        self.claiming = 0

    def stream(
        self, caller: Caller, requests: AsyncIterator[task_service_pb2.WorkerSessionRequest]
    ) -> AsyncIterator[Response]:
        return Session(self, caller).run(requests)


class Session:
    def __init__(self, sessions: WorkerSessions, caller: Caller) -> None:
        self.sessions = sessions
        self.runs = sessions.runs
        self.claims = sessions.claims
        self.reports = sessions.runs.reports
        self.signal = sessions.runs.signal
        self.settings = sessions.runs.settings
        self.caller = caller
        self.spec = WorkerSpec(worker_id="", node_name="")
        # The fields of a decided task the worker asked for (open.decided_select; None: all).
        self.decided: SelectedTasks | None = None
        # The leases this session holds: task uuid -> lease id.
        self.held: dict[str, str] = {}
        self.told: dict[str, Instruction] = {}
        self.acked: dict[str, int] = {}
        self.credits = 0
        self.pending: dict[str, Batch] = {}
        self.pending_lease: dict[str, str] = {}
        # Tasks whose reports are being applied: the watcher leaves them to the writer.
        self.applying: set[str] = set()
        self.heartbeat = False
        self.reader_done = False
        self.error: InvalidArgument | None = None
        self.store_failed = False
        self.out: asyncio.Queue[Response | BaseException] = asyncio.Queue()
        self.credit = asyncio.Event()
        # The overlapping claimer's wake-up (_overlap): credits came, or a claim began.
        self.overlap = asyncio.Event()
        # This session's claims in progress, and whether its last claim found tasks.
        self.claiming = 0
        self.found = False
        self.work = asyncio.Event()
        self.last_apply = 0.0
        self.last_check = 0.0
        # When the worker's last message came (monotonic clock), set when it came.
        self.heard_at = time.monotonic()
        self.heard = asyncio.Event()
        # What this session last wrote as the worker's last_seen_at (monotonic clock).
        self.seen_written = -math.inf
        # Every update names the lease's ttl (a Duration's fields, as a constructor takes them).
        ttl = duration_pb2.Duration()
        ttl.FromTimedelta(self.settings.lease_ttl)
        self.ttl = {"seconds": ttl.seconds, "nanos": ttl.nanos}

    # -- the stream ---------------------------------------------------------------------

    async def run(
        self, requests: AsyncIterator[task_service_pb2.WorkerSessionRequest]
    ) -> AsyncIterator[Response]:
        if not (self.caller.is_admin or self.caller.is_system):
            raise PermissionDenied(
                "only workers (the system user's tokens) and admins may open a worker session"
            )
        messages = aiter(requests)
        first = await anext(messages, None)
        if first is None or not first.HasField("open"):
            raise InvalidArgument("open", "is required in the first message")
        self.spec = worker_spec(first.open, "open")
        if not self.spec.worker_id:
            raise InvalidArgument("open.worker_id", "is required")
        if not self.spec.node_name:
            raise InvalidArgument("open.node_name", "is required")
        select = parse_select(TASK_ATTRS, first.open.decided_select, "open.decided_select")
        self.decided = SelectedTasks(select) if select else None
        self.credits = self.spec.free_slots
        self._take(first)
        loops = [
            asyncio.create_task(self._guard(self._read(messages))),
            asyncio.create_task(self._guard(self._claim())),
            *(
                [asyncio.create_task(self._guard(self._overlap()))]
                if not self.claims.db.is_sqlite
                else []
            ),
            asyncio.create_task(self._guard(self._write())),
            asyncio.create_task(self._guard(self._watch())),
        ]
        try:
            while True:
                item = await self.out.get()
                if isinstance(item, _Closed):
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._abandon_held()

    async def _guard(self, work: Any) -> None:
        try:
            await work
        except asyncio.CancelledError:
            if not cancel_not_asked_for():
                raise  # the session's own ending cancels its loops
            # A CancelledError no one asked this loop for (a future it awaited canceled by
            # another task; the server's own shared tasks -- group commit, grouped
            # transactions, token reads -- answer their waiters UNAVAILABLE instead). Ending
            # the loop alone would leave the session open and deaf -- its worker's reports
            # and heartbeats (or its claims) never answered again. The session ends instead,
            # as when the store failed: the worker opens another, and its leases live on.
            log.warning("session of %s: a loop was interrupted; ending it", self.spec.worker_id)
            self.store_failed = True
            self.out.put_nowait(Unavailable("the server interrupted this session; open another"))
        except (Unavailable, Aborted) as exc:
            # The store failed, not the worker: like a shutdown, the leases live on.
            self.store_failed = True
            self.out.put_nowait(exc)
        except BaseException as exc:
            self.out.put_nowait(exc)

    async def _abandon_held(self) -> None:
        """A session refused for an invalid message ends its tasks' attempts. One that was
        cut -- the worker gone, or only its connection: a proxy or balancer restarted, a
        network blip -- leaves its leases to their ttl, as a shutdown or a store failure
        does: the server cannot tell the two apart, a worker that comes back (to this
        replica or another) reattaches them, and one that does not has its attempts ended
        by the reaper as they expire. Ending them at once gained no time (the task is not
        runnable again before its lease could have run out: its process may still run)
        and made every proxy restart kill the work of every worker behind it."""
        if not self.held or self.runs.closing or self.store_failed or self.error is None:
            return
        reason = f"the worker sent an invalid message ({self.error.message})"
        held, self.held = self.held, {}
        for uuid, lease in held.items():
            cleanup = self.runs.spawn(self.reports.abandon(self.caller, uuid, lease, reason))
            # Shielded: a canceled call (the client left) still ends its attempts.
            await asyncio.shield(cleanup)

    # -- the reader ---------------------------------------------------------------------

    async def _read(self, messages: AsyncIterator[task_service_pb2.WorkerSessionRequest]) -> None:
        try:
            async for msg in messages:
                if msg.HasField("open"):
                    raise InvalidArgument("open", "is allowed in the first message only")
                self._take(msg)
        except InvalidArgument as exc:
            self.error = exc
            raise
        except Exception as exc:  # the transport failed: the session is over either way
            log.debug("session of %s broke: %r", self.spec.worker_id, exc)
        finally:
            self.reader_done = True
            self.work.set()

    def _take(self, msg: task_service_pb2.WorkerSessionRequest) -> None:
        self.heard_at = time.monotonic()
        self.heard.set()
        if msg.credits < 0:
            raise InvalidArgument("credits", "must not be negative")
        if len(msg.reports) > MAX_REPORTS:
            raise InvalidArgument("reports", f"at most {MAX_REPORTS} per message")
        if msg.credits:
            self.credits += msg.credits
            self.credit.set()
            self.overlap.set()
        for i, report in enumerate(msg.reports):
            uuid = report.task_uuid
            if not uuid:
                raise InvalidArgument(f"reports[{i}].task_uuid", "is required")
            check_uuid(uuid, TASK_INFIX, f"reports[{i}].task_uuid")
            if not report.lease_id:
                raise InvalidArgument(f"reports[{i}].lease_id", "is required")
            lease = self.pending_lease.get(uuid)
            if lease is not None and lease != report.lease_id:
                raise InvalidArgument(f"reports[{i}].lease_id", "changed within one batch")
            batch = self.pending.setdefault(uuid, Batch())
            if batch.exit is not None:
                continue  # nothing after the exit counts
            self.pending_lease[uuid] = report.lease_id
            batch.add(report_from(report))
        if msg.heartbeat:
            self.heartbeat = True
        if msg.reports or msg.heartbeat:
            self.work.set()

    # -- the claimer --------------------------------------------------------------------

    async def _claim(self) -> None:
        while True:
            while self.credits <= 0:
                self.credit.clear()
                await self.credit.wait()
            if self.credits < max(1, min(self.spec.free_slots, MAX_CLAIM) // 4):
                # A busy worker frees its slots one by one: gather a few credits into one
                # claim (one transaction) instead of a claim per freed slot.
                self.credit.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.credit.wait(), CREDIT_GATHER_SECONDS)
            if self._silent():
                await self._await_word()
                continue
            if self.credits <= 0:
                continue  # (the overlapping claimer took them meanwhile)
            # Marked before the claim: a change committed while it runs wakes the wait, if it
            # may have made a task claimable (ChangeSignal.claim_mark).
            mark = self.signal.claim_mark()
            if await self._claim_once():
                continue
            wait = IDLE_RECHECK
            # A retry backoff that ends changes nothing in the store: wake up for it too.
            backoff_end = await self.claims.next_runnable_at()
            if backoff_end is not None:
                until = (backoff_end - utcnow()).total_seconds()
                wait = min(wait, max(until, 0.0) + BACKOFF_SLACK)
            await self.signal.wait(wait, since=mark)

    async def _overlap(self) -> None:
        """PostgreSQL: a second claimer, claiming only while the first one's claim is in
        progress, the last claim found tasks (the session is busy) and credits are left.
        A claim is a chain of round trips and this process's work on its tasks: one at a
        time, a busy session's claims, back to back, bounded its rate while the server and
        the database each idled ~40 % of a core (bench/README.md, the thirty-first
        session). Two in flight overlap one's statements with the other's work; each takes
        its own credits, and the claim manager keeps them to different tasks
        (ClaimManager._claim_guarded: the node's turn, the tasks reserved). An idle session
        has one claimer: a change wakes one claim, not two."""
        while True:
            while not (self.credits > 0 and self.claiming and self.found) or self._silent():
                self.overlap.clear()
                await self.overlap.wait()
            await self._claim_once()

    async def _claim_once(self) -> bool:
        """One claim of up to the credits' worth (and the part, _part()): its tasks pushed
        to the worker in one message; whether it found any."""
        free = self.credits
        want = min(free, MAX_CLAIM, self._part())
        # The worker's free slots are its credits (what the claim counts in the registry
        # and jobtask_worker_free_slots), of which it takes `want`; its last_seen_at is
        # its last message (or, without the promise, now): `seen`, on the session's clock.
        seen, seen_at = self._last_seen()
        spec = replace(self.spec, free_slots=free, seen_at=seen_at)
        # Reserved while the claim runs (an overlapping claim takes from the rest), what it
        # did not take given back after.
        self.credits -= want
        self.claiming += 1
        self.sessions.claiming += 1
        if self.credits > 0:
            self.overlap.set()
        claims: list[Claim] = []
        try:
            claims = await self.claims.claim(self.caller, spec, want)
        finally:
            self.sessions.claiming -= 1
            self.claiming -= 1
            self.credits += want - len(claims)
            if self.credits > 0:
                self.credit.set()
        self.found = bool(claims)
        self.seen_written = seen
        if not claims:
            return False
        ttl = self.settings.lease_ttl.total_seconds()
        logged = EVENTS.isEnabledFor(logging.INFO)  # (asked once a claim, not a task)
        for claim in claims:
            uuid = claim.task.uuid
            self.held[uuid] = claim.lease_id
            self.told[uuid] = Instruction.CONTINUE
            if logged:
                emit("task_started", task_uuid=uuid, caller_uuid=self.caller.user_uuid)
        answer = Response()
        assignments_pb(claims, ttl, answer.assignments)
        self.out.put_nowait(answer)
        return True

    def _silent(self) -> bool:
        """Whether the worker broke its promise of a message every heartbeat_interval. A
        stopped or hung process keeps its connection (the kernel answers for it) and the
        credits it gave: claims made for it would each wait out a lease and burn one of
        its task's retries."""
        interval = self.spec.heartbeat_interval
        return bool(interval) and time.monotonic() - self.heard_at > SILENCE_INTERVALS * interval

    async def _await_word(self) -> None:
        """Waits for the silent worker's next message."""
        silent = time.monotonic() - self.heard_at
        log.warning(
            "worker %s: nothing heard for %.1fs (it promised a message every %.1fs);"
            " no task is assigned to it until it speaks",
            self.spec.worker_id,
            silent,
            self.spec.heartbeat_interval,
        )
        self.heard.clear()
        SILENT_SESSIONS.inc()
        began = time.monotonic()
        try:
            await self.heard.wait()
        finally:
            SILENT_SESSIONS.dec()
        silent += time.monotonic() - began
        log.info("worker %s: heard again after %.1fs", self.spec.worker_id, silent)

    def _last_seen(self) -> tuple[float, dt.datetime | None]:
        """The worker's last_seen_at for a claim made for it, on the session's clock and as
        the claim's `seen_at`: its last message, if it promised messages; else now (None:
        the claim stamps its own time)."""
        now = time.monotonic()
        if not self.spec.heartbeat_interval:
            return now, None
        return self.heard_at, utcnow() - dt.timedelta(seconds=now - self.heard_at)

    def _part(self) -> int:
        """The most the next claim takes. A claim of all of a worker's slots turns them
        over as one wave (claim, run, report, flush, credit, claim), the server, the
        database and the worker each waiting while another works. So on PostgreSQL, while
        no other claim or report flush of this process is in progress (nothing for the
        claim to overlap), a claim takes half the worker's slots: the second part's claim
        runs while the worker runs the first and the writer flushes its reports, and the
        parts stay apart: the worker answers each message of assignments with a message of
        its own, its part's reports and credits. Otherwise (other sessions'
        work overlaps; on SQLite, whose statements run in the server's own thread, nothing
        would) a claim takes what the credits allow."""
        alone = not (self.sessions.claiming or self.runs.commits.committing)
        split = alone and not self.claims.db.is_sqlite
        return claim_part(self.spec.slots, self.spec.free_slots, split=split)

    # -- the writer ---------------------------------------------------------------------

    async def _write(self) -> None:
        while True:
            if not (self.pending or self.heartbeat):
                if self.reader_done:
                    self.out.put_nowait(self._closed())
                    return
                self.work.clear()
                await self.work.wait()
                continue
            if self.heartbeat:
                self.heartbeat = False
                await self._renew()
            if not self.pending:
                continue
            if not any(b.urgent for b in self.pending.values()) and not self.reader_done:
                await self._coalesce()
            self.last_apply = time.monotonic()
            pending, leases = self.pending, self.pending_lease
            self.pending, self.pending_lease = {}, {}
            for uuid, lease in leases.items():
                # A report on a lease of an earlier session (after a reconnect) attaches it.
                self.held.setdefault(uuid, lease)
            items = [
                Submission(self.caller, uuid, leases[uuid], batch)
                for uuid, batch in pending.items()
            ]
            self.applying = set(pending)
            try:
                results = await self.runs.commits.apply_all(items)
            finally:
                self.applying = set()
            answer = Response()
            finished = TaskMessages()
            for item, result in zip(items, results, strict=True):
                if isinstance(result, (Unavailable, Aborted)):
                    raise result
                if isinstance(result, DomainError):
                    outcome = Outcome(verdict(None, None, False))
                    log.debug("report on %s refused: %s", item.task_uuid, result.message)
                elif isinstance(result, BaseException):
                    raise result
                else:
                    outcome = result
                self.acked[item.task_uuid] = max(self.acked.get(item.task_uuid, 0), item.batch.seq)
                self._update(answer.updates, item.task_uuid, item.lease_id, outcome, finished)
            self.out.put_nowait(answer)

    def _closed(self) -> BaseException:
        if self.error is not None:
            return self.error
        return _Closed()

    async def _coalesce(self) -> None:
        due = self.last_apply + COALESCE_SECONDS
        while not (self.reader_done or any(b.urgent for b in self.pending.values())):
            remaining = due - time.monotonic()
            if remaining <= 0:
                return
            self.work.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.work.wait(), remaining)

    async def _renew(self) -> None:
        every = min(IDLE_SEEN_EVERY, self.settings.live_horizon.total_seconds() / 4)
        if not self.held and time.monotonic() - self.seen_written < every:
            # Nothing to renew, and the registry's last_seen_at is no older than `every`.
            self.out.put_nowait(Response(heartbeat_acked=True))
            return
        outcomes = await self.reports.renew_session(dict(self.held), self.spec.worker_id)
        self.seen_written = time.monotonic()
        answer = Response(heartbeat_acked=True)
        finished = TaskMessages()
        for uuid, outcome in outcomes.items():
            self._update(answer.updates, uuid, self.held.get(uuid, ""), outcome, finished)
        self.out.put_nowait(answer)

    def _update(
        self,
        into: RepeatedCompositeFieldContainer[task_service_pb2.TaskUpdate],
        uuid: str,
        lease_id: str,
        outcome: Outcome,
        finished: TaskMessages,
    ) -> None:
        """The task's update, added to `into` (the answer's field: built where it is sent,
        not built apart and copied in whole, finished task and all); a finished task's
        message filled by `finished`, the answer's (the one before it, copied and changed)."""
        told = outcome.verdict
        self.told[uuid] = told.instruction
        decided, selected = outcome.finished, self.decided
        update = into.add(
            task_uuid=uuid,
            acked_seq=self.acked.get(uuid, 0),
            instruction=_INSTRUCTION_PB[told.instruction],
            reason=told.reason,
            task=None if decided is None or selected else finished.fields(decided),
            # (Given to the constructor: ~2 us less than set field by field after it.)
            lease={"lease_id": lease_id, "ttl": self.ttl},
        )
        if outcome.lease_expires_at is not None:
            stamp(update.lease.expires_at, outcome.lease_expires_at)
        if decided is not None:
            if selected is None:
                finished.fill(update.task, decided)
            else:
                selected.fill(update.task, decided)
        if outcome.finished is not None or told.instruction is Instruction.STOP:
            # The attempt is over (or not ours): the session no longer holds the lease.
            if self.held.get(uuid) == lease_id:
                del self.held[uuid]
            self.told.pop(uuid, None)
            self.acked.pop(uuid, None)

    # -- the watcher --------------------------------------------------------------------

    async def _watch(self) -> None:
        """Sends CANCEL or STOP for tasks whose status changed, on the change signal, at
        most every STATUS_CHECK_SECONDS (the signals of one window are taken as one)."""
        while True:
            mark = self.signal.mark()
            await self.signal.wait(since=mark)
            not_before = self.last_check + STATUS_CHECK_SECONDS - time.monotonic()
            if not_before > 0:
                await asyncio.sleep(not_before)
            self.last_check = time.monotonic()
            if not self.held:
                continue
            held = dict(self.held)
            outcomes = await self.reports.session_states(held)
            answer = Response()
            finished = TaskMessages()
            for uuid, outcome in outcomes.items():
                if (
                    uuid in self.held
                    and uuid not in self.applying
                    and uuid not in self.pending
                    and outcome.verdict.instruction is not self.told.get(uuid)
                ):
                    self._update(answer.updates, uuid, held[uuid], outcome, finished)
            if answer.updates:
                self.out.put_nowait(answer)
