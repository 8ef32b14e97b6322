"""The history checker: what the store recorded (attempts, the change feed, the jobs' counts)
held against what the task processes themselves wrote down (tests/scripts/chaos_task) and
what watchers received. Works on SQLite and PostgreSQL (it reads through jobtask's own
store layer). Every rule that fails adds a line to `History.problems`; the figures
(tasks lost, double completions, recovery, throughput) come from the same reading.

Rules (docs/reliability.md lists them with the figures):
- every task reaches a final status, and every child a run acknowledged exists;
- no two attempts of one task overlap in time, and every attempt was closed;
- every completion belongs to a live lease: the task has exactly one attempt that ended
  `completed`, it is its last attempt, it closed at the instant the task completed, and the
  run of that very attempt (same task, attempt number, node) wrote its `end` line inside it;
  in the feed, the task's last claim before its completion granted that attempt's lease, and
  the run ended before that lease expired as last renewed: each claim and each report renews
  the lease to its time plus the lease ttl, and the feed records both (the claim's
  lease_expires_at, the reports' progress, log and change events). A lease renewed by bare
  heartbeats only (no event) cannot be proven so: those completions are counted as
  *unproven*, not passed;
- every watcher saw its job's events after its snapshot, each once, in order, no gap;
- every job's task counts (and tasks_summary, as the gateway shows it) equal a recount;
- every run the scripts recorded belongs to a recorded attempt of its task, at most one run
  per attempt, started inside that attempt and ended before the task's next attempt began
  (a run may outlive its attempt's record when its stream was cut: the server cannot reach
  it, and the task waits out the lease while its worker stops it) -- so no two runs of one
  task at once, and a script that ran to the end more than once did so in recorded attempts;
- no stored status change is illegal (domain/statuses.py's tables), and the Arvados flags
  stored with each job change agree with its status.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobtask.domain.statuses import (
    JOB_TERMINAL,
    JobStatus,
    TaskStatus,
    job_can_move,
    task_can_move,
)
from jobtask.store.database import Database
from jobtask.store.feed import (
    JOB_CHANGED,
    TASK_CHANGED,
    TASK_CREATED,
    TASK_DELETED,
    TASK_LOG,
    TASK_PROGRESS,
    full_payload,
)
from jobtask.store.schema import TASK_STATUS_COUNTS, events, job_tasks, jobs, task_attempts
from sqlalchemy import select

# A run's own clock and the store's are the same host's; allow for rounding only.
CLOCK_SLACK = dt.timedelta(milliseconds=20)
FINAL = frozenset({"completed", "failed", "canceled"})
# The services' lease ttl (tests/scale's Topology.lease_ttl, $JOBTASK_LEASE_TTL).
LEASE_TTL = dt.timedelta(seconds=10)
# Events a worker's report writes in the transaction that renews its lease (at their time).
_RENEWING = frozenset({TASK_PROGRESS, TASK_LOG})


def utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass
class Run:
    """One run of a task's script, as it recorded itself."""

    uuid: str
    attempt: int
    pid: int
    node: str
    start: dt.datetime
    end: dt.datetime | None = None


@dataclass
class RunLog:
    runs: list[Run]
    # child uuid -> (the task whose run created it, that run's attempt)
    spawned: dict[str, tuple[str, int]]


def read_runlog(path: Path) -> RunLog:
    runs: dict[tuple[str, int, int], Run] = {}
    order: list[Run] = []
    spawned: dict[str, tuple[str, int]] = {}
    for line in path.read_text().splitlines():
        word, *rest = line.split()
        if word == "spawn":
            spawned[rest[1]] = (rest[0], int(rest[2]))
            continue
        uuid, attempt, pid, node, stamp = rest
        at = dt.datetime.fromtimestamp(float(stamp), dt.UTC)
        key = (uuid, int(attempt), int(pid))
        if word == "start":
            runs[key] = Run(uuid, int(attempt), int(pid), node, at)
            order.append(runs[key])
        elif word == "end":
            runs[key].end = at
    return RunLog(order, spawned)


@dataclass
class Watched:
    """What one resuming watcher (jobtask.sdk's watch) received for one job."""

    job_uuid: str
    snapshot_seq: int = -1
    seqs: list[int] = field(default_factory=list)
    breaks: int = 0  # streams that broke and were resumed
    terminal: bool = False


@dataclass
class Fault:
    """When the fault began and ended (the same instant for a kill)."""

    began: dt.datetime
    ended: dt.datetime


@dataclass
class History:
    problems: list[str] = field(default_factory=list)
    tasks: int = 0
    lost: int = 0
    double: int = 0
    retried: int = 0  # tasks with more than one attempt
    extra_runs: int = 0  # runs beyond a task's completing one (each in an attempt of its own)
    # Completions whose run's end no recorded renewal covers (renewed by heartbeats alone).
    unproven_leases: int = 0
    completions: list[dt.datetime] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(text)


@dataclass
class Stored:
    """The tables as read; each event's payload in full (feed.full_payload: a stored one
    leaves out the columns at their defaults, and the checks read `lease_id` and the job's
    flags as present)."""

    jobs: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    events: list[dict[str, Any]]


async def read_store(url: str) -> Stored:
    db = Database(url)
    try:
        async with db.read() as conn:

            async def rows(query: Any) -> list[dict[str, Any]]:
                return [dict(r._mapping) for r in await conn.execute(query)]

            attempts = await rows(
                select(task_attempts, job_tasks.c.uuid.label("task_uuid")).join(
                    job_tasks, job_tasks.c.id == task_attempts.c.task_id
                )
            )
            return Stored(
                jobs=await rows(select(jobs)),
                tasks=await rows(select(job_tasks)),
                attempts=attempts,
                events=[
                    {**e, "payload": full_payload(e["type"], e["payload"])}
                    for e in await rows(select(events).order_by(events.c.seq))
                ],
            )
    finally:
        await db.dispose()


def check_transitions(stored_events: Iterable[Mapping[str, Any]], history: History) -> None:
    """Every status change in the feed is one the tables allow; every job change carries
    flags that agree with its status."""
    job_status: dict[str, JobStatus] = {}
    task_status: dict[str, TaskStatus] = {}
    for event in stored_events:
        payload = event["payload"]
        kind = event["type"]
        if kind == JOB_CHANGED:
            new = JobStatus(payload["status"])
            old = job_status.get(event["job_uuid"])
            if old is not None and old is not new and not job_can_move(old, new):
                history.problem(f"job {event['job_uuid']}: illegal move {old} -> {new}")
            job_status[event["job_uuid"]] = new
            for text in flag_problems(payload):
                history.problem(f"job {event['job_uuid']} at seq {event['seq']}: {text}")
        elif kind in (TASK_CREATED, TASK_CHANGED):
            task = event["task_uuid"]
            new_task = TaskStatus(payload["status"])
            old_task = task_status.get(task)
            if kind == TASK_CREATED and old_task is not None:
                history.problem(f"task {task}: created twice")
            moved = old_task is not None and old_task is not new_task
            if moved and not task_can_move(old_task, new_task):  # type: ignore[arg-type]
                history.problem(f"task {task}: illegal move {old_task} -> {new_task}")
            task_status[task] = new_task
        elif kind == TASK_DELETED:
            task_status.pop(event["task_uuid"], None)


# The Arvados job flags each status implies (Arvados's Job model: `running` while Running,
# `success` decided only when finished, `cancelled_at` once a cancel was asked for).
_RUNNING = {JobStatus.ACTIVE, JobStatus.PAUSE_REQUESTED, JobStatus.CANCEL_REQUESTED}
_STATE = {
    JobStatus.UNDER_CONSTRUCTION: "Queued",
    JobStatus.QUEUED: "Queued",
    JobStatus.REQUEUEING: "Queued",
    JobStatus.PAUSED: "Queued",
    JobStatus.ACTIVE: "Running",
    JobStatus.PAUSE_REQUESTED: "Running",
    JobStatus.CANCEL_REQUESTED: "Running",
    JobStatus.COMPLETED: "Complete",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELED: "Cancelled",
}


def flag_problems(job: Mapping[str, Any]) -> list[str]:
    """Where a job's Arvados flags contradict its status (job as a feed payload or a row)."""
    status = JobStatus(job["status"])
    out = []
    # Asked to cancel or pause before it ever started, a job is still Queued, not running.
    started = job["started_at"] is not None
    state = _STATE[status] if started or status not in _RUNNING else "Queued"
    if job["state"] != state:
        out.append(f"state {job['state']} with status {status}")
    if bool(job["running"]) != (status in _RUNNING and started):
        out.append(f"running={job['running']} with status {status}")
    success = {JobStatus.COMPLETED: True, JobStatus.FAILED: False, JobStatus.CANCELED: False}
    if job["success"] != success.get(status):
        out.append(f"success={job['success']} with status {status}")
    cancelling = status in (JobStatus.CANCEL_REQUESTED, JobStatus.CANCELED)
    if (job["cancelled_at"] is not None) != cancelling:
        out.append(f"cancelled_at={job['cancelled_at']} with status {status}")
    if (job["finished_at"] is not None) != (status in JOB_TERMINAL):
        out.append(f"finished_at={job['finished_at']} with status {status}")
    if status is JobStatus.ACTIVE and not started:
        out.append(f"no started_at with status {status}")
    return out


def recount(tasks: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per job uuid, its tasks counted by status, as the n_* columns."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TASK_STATUS_COUNTS, 0))
    for task in tasks:
        counts[task["job_uuid"]]["n_" + task["status"].replace("-", "_")] += 1
    return counts


def summary_of(counts: Mapping[str, int]) -> dict[str, int]:
    """tasks_summary (Arvados) from status counts."""
    return {
        "todo": counts["n_queued"] + counts["n_soft_failed"] + counts["n_paused"],
        "running": counts["n_active"],
        "done": counts["n_completed"],
        "failed": counts["n_failed"],
    }


def check_counts(
    stored: Stored, history: History, summaries: Mapping[str, Mapping[str, int]] | None = None
) -> None:
    counted = recount(stored.tasks)
    for job in stored.jobs:
        expected = counted[job["uuid"]]
        got = {column: job[column] for column in TASK_STATUS_COUNTS}
        if got != expected:
            history.problem(f"job {job['uuid']}: counts {got} but a recount gives {expected}")
        if summaries is not None and job["uuid"] in summaries:
            shown = {k: int(v) for k, v in summaries[job["uuid"]].items()}
            if shown != summary_of(expected):
                history.problem(
                    f"job {job['uuid']}: tasks_summary {shown}, recount {summary_of(expected)}"
                )


def check_watchers(stored: Stored, watched: Iterable[Watched], history: History) -> None:
    by_job: dict[str, list[int]] = defaultdict(list)
    for event in stored.events:
        by_job[event["job_uuid"]].append(event["seq"])
    for seen in watched:
        if seen.snapshot_seq < 0:
            history.problem(f"watcher of {seen.job_uuid}: no snapshot")
            continue
        if not seen.terminal:
            history.problem(f"watcher of {seen.job_uuid}: its stream did not reach the end")
        if any(a >= b for a, b in itertools.pairwise(seen.seqs)):
            history.problem(f"watcher of {seen.job_uuid}: events out of order or repeated")
        expected = [s for s in by_job[seen.job_uuid] if s > seen.snapshot_seq]
        if seen.seqs != expected:
            missing = sorted(set(expected) - set(seen.seqs))
            extra = sorted(set(seen.seqs) - set(expected))
            history.problem(
                f"watcher of {seen.job_uuid}: {len(missing)} events missed (first "
                f"{missing[:5]}), {len(extra)} not in the feed (first {extra[:5]})"
            )


def stamp(value: Any) -> dt.datetime | None:
    """A time as the feed's payloads hold it (ISO text) or as a row holds it."""
    if value is None:
        return None
    return utc(dt.datetime.fromisoformat(value) if isinstance(value, str) else value)


def check_lease(
    uuid: str,
    attempt: Mapping[str, Any],
    task_events: Sequence[Mapping[str, Any]],
    run_end: dt.datetime,
    history: History,
    ttl: dt.timedelta,
) -> None:
    """The completing attempt's lease, as the feed tells it: granted by the task's last
    claim before its completion, and live (not expired as last renewed) when its run
    ended. Adds a problem, or counts the completion unproven when only a heartbeat (which
    writes no event) could have kept the lease live."""
    lease = attempt["lease_id"]
    done = next(
        (
            e
            for e in task_events
            if e["type"] == TASK_CHANGED and e["payload"]["status"] == "completed"
        ),
        None,
    )
    if done is None:
        history.problem(f"task {uuid}: completed without a completion in the feed")
        return
    # The claims before the completion: each move into active (payloads name the lease).
    claims: list[Mapping[str, Any]] = []
    status, held = None, None
    for event in task_events:
        if event["seq"] >= done["seq"]:
            break
        if event["type"] in (TASK_CREATED, TASK_CHANGED):
            payload = event["payload"]
            moved = payload["status"] == "active" and status != "active"
            if moved or payload["lease_id"] != held:
                claims.append(event)
            status, held = payload["status"], payload["lease_id"]
    # Payloads are read in full (feed.full_payload): lease_id is always there, None when no
    # lease is held, so a claim that names no lease cannot pass for the attempt's.
    if not claims or claims[-1]["payload"]["lease_id"] != lease:
        history.problem(
            f"task {uuid}: completed by attempt {attempt['attempt']}, whose lease the last "
            "claim before the completion did not grant"
        )
        return
    claim = claims[-1]
    # Each renewal the feed recorded, as the expiry it set: the claim's own, then those of
    # the reports (an event of the worker's report is written with the renewal, at `now`).
    expiries = [
        (
            utc(claim["created_at"]),
            stamp(claim["payload"]["lease_expires_at"]) or attempt["started_at"] + ttl,
        )
    ]
    for event in task_events:
        if not claim["seq"] < event["seq"] < done["seq"]:
            continue
        at = utc(event["created_at"])
        assert at is not None
        if event["type"] in _RENEWING:
            expiries.append((at, at + ttl))
        elif event["type"] == TASK_CHANGED and event["payload"]["lease_id"] == lease:
            expires = stamp(event["payload"]["lease_expires_at"])
            if expires is not None:
                expiries.append((at, expires))
    live_until = max(
        (expires for at, expires in expiries if at is not None and at <= run_end + CLOCK_SLACK),
        default=None,
    )
    if live_until is not None and run_end <= live_until + CLOCK_SLACK:
        return
    # Renewed by heartbeats alone (they write no event): the attempt keeps its lease's
    # expiry as last renewed before it ended (task_attempts.lease_expires_at), and the
    # server refuses every report on an expired lease, so a run that ended past it ran
    # without a live lease.
    recorded = utc(attempt["lease_expires_at"])
    if recorded is None:
        history.unproven_leases += 1
    elif run_end > recorded + CLOCK_SLACK:
        history.problem(
            f"task {uuid}: attempt {attempt['attempt']} ended at {run_end.isoformat()}, after "
            f"its lease expired ({recorded.isoformat()})"
        )


def check_attempts(
    stored: Stored, log: RunLog, history: History, ttl: dt.timedelta = LEASE_TTL
) -> None:
    tasks = {t["uuid"]: t for t in stored.tasks}
    events_of: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in stored.events:
        if event["task_uuid"] is not None:
            events_of[event["task_uuid"]].append(event)
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for attempt in stored.attempts:
        attempt["started_at"] = utc(attempt["started_at"])
        attempt["ended_at"] = utc(attempt["ended_at"])
        by_task[attempt["task_uuid"]].append(attempt)
    runs: dict[tuple[str, int], list[Run]] = defaultdict(list)
    for run in log.runs:
        runs[(run.uuid, run.attempt)].append(run)

    # Every run belongs to a recorded attempt, one run per attempt, starting inside it.
    attempt_of = {(a["task_uuid"], a["attempt"]): a for a in stored.attempts}
    for key, these in runs.items():
        recorded = attempt_of.get(key)
        if recorded is None:
            history.problem(f"task {key[0]}: a run of attempt {key[1]}, which is not recorded")
            continue
        if len(these) > 1:
            history.problem(f"task {key[0]}: attempt {key[1]} ran {len(these)} processes")
        for run in these:
            if run.node != recorded["node_name"]:
                history.problem(f"task {key[0]} attempt {key[1]}: ran on {run.node}")
            if run.start < recorded["started_at"] - CLOCK_SLACK:
                history.problem(f"task {key[0]} attempt {key[1]}: ran before it was claimed")
            # A run may outlive its attempt's record when the stream was cut (the server
            # cannot reach the process; its worker stops it by its own clock), but never
            # into the task's next attempt: two runs of one task at once.
            next_starts = [
                a["started_at"] for a in by_task.get(key[0], []) if a["attempt"] > key[1]
            ]
            if run.end is not None and next_starts and run.end > min(next_starts) + CLOCK_SLACK:
                history.problem(
                    f"task {key[0]} attempt {key[1]}: its run went on into the next attempt"
                )

    for uuid, task in tasks.items():
        attempts = sorted(by_task.get(uuid, []), key=lambda a: (a["started_at"], a["attempt"]))
        if len(attempts) > 1:
            history.retried += 1
        if any(a["ended_at"] is None for a in attempts) and task["status"] in FINAL:
            history.problem(f"task {uuid}: an attempt was never closed")
        for earlier, later in itertools.pairwise(attempts):
            if earlier["ended_at"] is None or earlier["ended_at"] > later["started_at"]:
                history.problem(
                    f"task {uuid}: attempts {earlier['attempt']} and {later['attempt']} overlap"
                )
        completing = [a for a in attempts if a["outcome"] == "completed"]
        if len(completing) > 1:
            history.double += 1
            history.problem(f"task {uuid}: completed by {len(completing)} attempts")
        if task["status"] != "completed":
            continue
        if not completing:
            history.problem(f"task {uuid}: completed without a completing attempt")
            continue
        last = completing[-1]
        history.completions.append(last["ended_at"])
        if last is not attempts[-1]:
            history.problem(f"task {uuid}: attempt {attempts[-1]['attempt']} after completion")
        if utc(task["finished_at"]) != last["ended_at"]:
            history.problem(f"task {uuid}: completed apart from its attempt's close")
        own = [r for r in runs.get((uuid, last["attempt"]), []) if r.end is not None]
        if not own:
            history.problem(f"task {uuid}: the completing attempt's run never ended")
        else:
            run_end = max(r.end for r in own if r.end is not None)
            check_lease(uuid, last, events_of.get(uuid, []), run_end, history, ttl)
        ended_runs = [r for a in attempts for r in runs.get((uuid, a["attempt"]), []) if r.end]
        history.extra_runs += max(0, len(ended_runs) - 1)


def check_lost(stored: Stored, log: RunLog, history: History) -> None:
    existing = {t["uuid"]: t for t in stored.tasks}
    history.tasks = len(existing)
    not_final = [u for u, t in existing.items() if t["status"] != "completed"]
    for uuid in not_final[:10]:
        history.problem(f"task {uuid}: ended {existing[uuid]['status']}, not completed")
    # An attempt that did not end its task (its lease lost, its run handed back) is redone
    # from the start, and the tasks it created go with it (lifecycle.delete_descendants):
    # only the tasks created by the attempt its creator ended with must be in the store.
    missing = [
        u
        for u, (parent, attempt) in log.spawned.items()
        if u not in existing and not (parent in existing and existing[parent]["attempt"] > attempt)
    ]
    for uuid in missing[:10]:
        history.problem(f"task {uuid}: created (acknowledged) but not in the store")
    history.lost = len(not_final) + len(missing)
    for job in stored.jobs:
        if job["status"] != "completed":
            history.problem(f"job {job['uuid']}: ended {job['status']}")


def double_by_feed(stored: Stored, history: History) -> None:
    """Completions as the feed tells them: a task moved to completed more than once."""
    moved: Counter[str] = Counter()
    last: dict[str, str] = {}
    for event in stored.events:
        if event["type"] not in (TASK_CREATED, TASK_CHANGED):
            continue
        status = event["payload"]["status"]
        if status == "completed" and last.get(event["task_uuid"]) != "completed":
            moved[event["task_uuid"]] += 1
        last[event["task_uuid"]] = status
    for uuid, n in moved.items():
        if n > 1:
            history.double += 1
            history.problem(f"task {uuid}: moved to completed {n} times in the feed")


async def check(
    url: str,
    runlog: Path,
    watched: Iterable[Watched] = (),
    summaries: Mapping[str, Mapping[str, int]] | None = None,
    lease_ttl: dt.timedelta = LEASE_TTL,
) -> History:
    stored = await read_store(url)
    log = read_runlog(runlog)
    history = History()
    check_lost(stored, log, history)
    check_attempts(stored, log, history, lease_ttl)
    double_by_feed(stored, history)
    check_counts(stored, history, summaries)
    check_watchers(stored, watched, history)
    check_transitions(stored.events, history)
    history.completions.sort()
    return history


@dataclass
class Figures:
    cell: str
    tasks: int
    lost: int
    double: int
    retried: int
    extra_runs: int
    recovery: float | None  # seconds from the fault's end to the next completion
    before: float  # completions per second
    during: float | None
    after: float
    watcher_breaks: int
    problems: int
    unproven_leases: int = 0

    def row(self) -> list[str]:
        def rate(x: float | None) -> str:
            return "—" if x is None else f"{x:.1f}"

        return [
            self.cell,
            str(self.tasks),
            str(self.lost),
            str(self.double),
            str(self.retried),
            str(self.extra_runs),
            "—" if self.recovery is None else f"{self.recovery:.1f}",
            rate(self.before),
            rate(self.during),
            rate(self.after),
            str(self.watcher_breaks),
            str(self.unproven_leases),
        ]


HEADER = [
    "cell",
    "tasks",
    "lost",
    "double completions",
    "tasks retried",
    "extra runs",
    "recovery s",
    "before /s",
    "during /s",
    "after /s",
    "watch resumes",
    "lease unproven",
]


def figures(cell: str, history: History, fault: Fault, watched: Iterable[Watched]) -> Figures:
    done = history.completions
    began, ended = fault.began, fault.ended
    before = [t for t in done if t < began]
    during = [t for t in done if began <= t <= ended]
    after = [t for t in done if t > ended]

    def per_second(n: int, seconds: float) -> float:
        return n / seconds if seconds > 0 else 0.0

    start = done[0] if done else began
    span_during = (ended - began).total_seconds()
    return Figures(
        cell=cell,
        tasks=history.tasks,
        lost=history.lost,
        double=history.double,
        retried=history.retried,
        extra_runs=history.extra_runs,
        recovery=(after[0] - ended).total_seconds() if after else None,
        before=per_second(len(before), (began - start).total_seconds()),
        during=per_second(len(during), span_during) if span_during >= 0.5 else None,
        after=per_second(len(after), (after[-1] - ended).total_seconds()) if after else 0.0,
        watcher_breaks=sum(w.breaks for w in watched),
        problems=len(history.problems),
        unproven_leases=history.unproven_leases,
    )


def table(rows: Iterable[Figures]) -> str:
    """A Markdown table of the figures."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(f.row()) + " |" for f in rows]
    return "\n".join(lines)
