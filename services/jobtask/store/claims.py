"""The claim queries: runnable tasks best first, and the counts resource limits need."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from jobtask.domain.statuses import JOB_DISPATCHABLE, TASK_CLAIMABLE, TaskStatus
from jobtask.store import driver
from jobtask.store.arrays import none_of, one_of
from jobtask.store.rows import TASK_FIELDS, TaskRow, task_of_values, task_row, utc
from jobtask.store.schema import job_tasks, jobs, task_failures, workers
from sqlalchemy import (
    BindParameter,
    CompoundSelect,
    Row,
    Select,
    TextClause,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

_lower = aliased(job_tasks, name="lower")
_parent = aliased(job_tasks, name="parent")
_ACTIVE = TaskStatus.ACTIVE.value
_CLAIMABLE = sorted(s.value for s in TASK_CLAIMABLE)
_DISPATCHABLE = sorted(s.value for s in JOB_DISPATCHABLE)
# Fair share reads this many owners' tasks per statement.
OWNERS_PER_STATEMENT = 8
# What choosing and ordering candidates reads of them on PostgreSQL (and the uuid that
# names them), where the chosen ones are read again, whole, as they are locked: a whole row
# (its JSON decoded) and its job's three columns cost as much again per candidate, and a
# claim reads more candidates than it takes (a page of CANDIDATE_PAGE at least).
_NARROW = ("id", "uuid", "job_id", "owner_uuid")
# Where a candidate's columns sit, read by position: a Row's lookup by name costs ~2,000
# instructions (SQLAlchemy's hasattr on the Row class misses and formats an AttributeError),
# six a one-task job claimed. A candidate (either form: the whole row in table order, or
# _NARROW) starts with its id, uuid and job_id; a whole row (every candidate on SQLite,
# lock_candidates' rows on PostgreSQL) ends with failed_by_me. tests/core/test_candidates.py
# holds the positions to the rows' names on each store.
CANDIDATE_ID = _NARROW.index("id")
CANDIDATE_JOB_ID = _NARROW.index("job_id")
FAILED_BY_ME = -1
_OWNER_AT = {False: list(job_tasks.c.keys()).index("owner_uuid"), True: _NARROW.index("owner_uuid")}


def _constant(value: str | int) -> Any:
    """A constant written into the statement's text rather than sent as a parameter: the
    planner proves a partial index's condition (ix_job_tasks_status_owner_uuid_id holds
    waiting tasks only) from the text, and estimates the constant's rows from statistics,
    whatever the plan's kind."""
    if isinstance(value, int):
        return literal_column(str(value))
    return literal_column("'" + value.replace("'", "''") + "'")


_COMPLETED = _constant(TaskStatus.COMPLETED.value)
_ONE = _constant(1)
_ZERO = _constant(0)


def runnable_tasks(
    worker_id: str | BindParameter[str], *, at_priority: bool = False, narrow: bool = False
) -> Select[Any]:
    """Tasks a worker may start now, with `failed_by_me` telling whether this worker failed
    the task before (unordered: see `candidates` for the order). Not their job's columns:
    the claimer locks each job and reads its row whole then (jobtask.store.locks), where
    three subqueries per task (and the job's JSON decoded again per task) were as many
    probes of the same row. `at_priority`: only tasks of jobs at priority :priority.
    `narrow`: only the columns a candidate is chosen by (_NARROW), for a read whose rows
    are read again, whole, where they are locked (see lock_candidates).

    A task is runnable when it is queued (or soft-failed and its retry backoff is over at
    :now), its job is queued or active, every task of its job with a lower sequence has
    completed (seeds: "A step cannot be run until all steps with lower sequence numbers have
    completed"), and the task that created it (if any) has completed.

    Written for PostgreSQL's planner, whatever its statistics: job_tasks is the only table
    in FROM, so a page is a walk of a (status, ...) index in id order that stops after its
    LIMIT. Joined with jobs, a job that had just gained its tasks (no statistics yet) drew
    a plan that read all of the job's waiting tasks and sorted them, each claim. The
    subqueries on jobs and on the creating task end in OFFSET 0, which keeps each a probe
    by primary key or uuid per row: without it the creator's check became a hash of every
    completed task in the table, built by each claim. The creator is found by uuid alone (its
    status test is written so that no index on status can serve it) and the lower
    sequences' check has one index, (job_id, sequence, status): plans made while the table
    was small (PostgreSQL keeps a prepared statement's generic plan) took the others and
    read whole jobs (see also jobtask.store.database.SESSION_SETTINGS).
    """
    t = job_tasks
    failed_by_me = exists().where(
        and_(task_failures.c.task_id == t.c.id, task_failures.c.worker_id == worker_id)
    )
    job_ok = [jobs.c.id == t.c.job_id, jobs.c.status.in_([_constant(s) for s in _DISPATCHABLE])]
    if at_priority:
        job_ok.append(jobs.c.priority == bindparam("priority"))

    columns: list[Any] = (
        [t.c[name] for name in _NARROW] if narrow else [t, failed_by_me.label("failed_by_me")]
    )
    return select(*columns).where(
        t.c.status.in_([_constant(s) for s in _CLAIMABLE]),
        t.c.runnable_after.is_(None) | (t.c.runnable_after <= bindparam("now")),
        exists(select(_ONE).where(*job_ok).offset(_ZERO)),
        ~exists().where(
            _lower.c.job_id == t.c.job_id,
            _lower.c.sequence < t.c.sequence,
            _lower.c.status != _COMPLETED,
        ),
        (t.c.created_by_job_task_uuid.is_(None))
        | exists(
            select(_ONE)
            .where(
                _parent.c.uuid == t.c.created_by_job_task_uuid,
                # IS TRUE: a test no index on status can serve (see above).
                (_parent.c.status == _COMPLETED).is_(true()),
            )
            .offset(_ZERO)
        ),
    )


def _next_level() -> Select[Any]:
    """The highest priority, at most :at_most, among dispatchable jobs: one index probe per
    job status (ix_jobs_fair's prefix), where DISTINCT over the jobs would read them all."""
    probes = [
        select(jobs.c.priority)
        .where(jobs.c.status == status, jobs.c.priority <= bindparam("at_most"))
        .order_by(jobs.c.priority.desc())
        .limit(1)
        .scalar_subquery()
        for status in _DISPATCHABLE
    ]
    return select(*probes)


def _page(status: str, narrow: bool) -> Select[Any]:
    """Runnable tasks of one priority level and one waiting status, in order of arrival:
    the (status, id) index is walked in order and the walk stops after :limit rows."""
    return (
        runnable_tasks(bindparam("worker_id"), at_priority=True, narrow=narrow)
        .where(
            job_tasks.c.status == _constant(status),
            none_of(job_tasks.c.job_id, "skip_jobs"),
            none_of(job_tasks.c.id, "skip_tasks"),
        )
        .order_by(job_tasks.c.id)
        .limit(bindparam("limit"))
    )


def _owners() -> TextClause:
    """The highest priority level at most :at_most with dispatchable jobs (`level`), its
    owners, each with its oldest job's id in each dispatchable status (`owners` takes the
    least), and the next lower level with dispatchable jobs (`below`): one statement, where
    a level's probe, its owners and the probe for the level below were three round trips.

    The levels: one index probe per job status (ix_jobs_fair's prefix), where DISTINCT over the
    jobs would read them all. The owners: a walk of ix_jobs_fair (status, priority,
    owner_uuid, id) from owner to next owner, each step one probe (a recursive CTE: the
    index skip scan neither SQLite nor PostgreSQL does by itself), so a claim reads a few
    index entries per owner: a GROUP BY over the level's jobs read every queued job each
    claim, and a queue of one-task jobs is as long as the queue of tasks."""

    def top(bound: str) -> str:
        probes = " UNION ALL ".join(
            f"SELECT (SELECT priority FROM jobs WHERE status = :s{i} AND priority {bound}"
            " ORDER BY priority DESC LIMIT 1) AS p"
            for i in range(len(_DISPATCHABLE))
        )
        return f"SELECT max(p) FROM ({probes}) AS probes"

    ctes = [f"lvl(p) AS ({top('<= :at_most')})", f"low(p) AS ({top('< (SELECT p FROM lvl)')})"]
    picks = []
    for i in range(len(_DISPATCHABLE)):
        level = f"status = :s{i} AND priority = (SELECT p FROM lvl)"
        ctes.append(
            f"o{i}(owner_uuid) AS (SELECT min(owner_uuid) FROM jobs WHERE {level}"
            f" UNION ALL SELECT (SELECT min(j.owner_uuid) FROM jobs j WHERE j.{level}"
            f" AND j.owner_uuid > o{i}.owner_uuid) FROM o{i} WHERE o{i}.owner_uuid IS NOT NULL)"
        )
        picks.append(
            f"SELECT o{i}.owner_uuid, (SELECT min(j.id) FROM jobs j WHERE j.{level}"
            f" AND j.owner_uuid = o{i}.owner_uuid) AS first,"
            " (SELECT p FROM lvl) AS level, (SELECT p FROM low) AS below"
            f" FROM o{i} WHERE o{i}.owner_uuid IS NOT NULL"
        )
    statuses = {f"s{i}": status for i, status in enumerate(_DISPATCHABLE)}
    return text("WITH RECURSIVE " + ", ".join(ctes) + " " + " UNION ALL ".join(picks)).bindparams(
        **statuses
    )


@dataclass
class Level:
    """One priority level of dispatchable jobs (see owners)."""

    priority: int
    # Its owners, each with its oldest dispatchable job's id.
    owners: list[tuple[str, int]]
    # The next lower level with dispatchable jobs (None: there is none).
    below: int | None


async def owners(conn: AsyncConnection, at_most: int) -> Level | None:
    """The highest priority level at most `at_most` with dispatchable jobs, with its owners
    and the next level below; None if no job is dispatchable at or below `at_most`."""
    rows = await driver.rows(conn, _OWNERS, {"at_most": at_most})
    if not rows:
        return None
    first: dict[str, int] = {}
    for owner, job_id, _, _ in rows:
        if owner not in first or job_id < first[owner]:
            first[owner] = job_id
    return Level(rows[0][2], list(first.items()), rows[0][3])


@functools.lru_cache(maxsize=2 * OWNERS_PER_STATEMENT)
def _owner_pages(owners: int, narrow: bool) -> CompoundSelect[Any]:
    """`_page` for each of `owners` owners (:o0, :o1, ...) and each waiting status, as one
    statement: every branch walks the (status, owner_uuid, id) index and stops after
    :limit rows."""
    branches = []
    for i in range(owners):
        for status in _CLAIMABLE:
            page = (
                runnable_tasks(bindparam("worker_id"), at_priority=True, narrow=narrow)
                .where(
                    job_tasks.c.status == _constant(status),
                    job_tasks.c.owner_uuid == bindparam(f"o{i}"),
                    none_of(job_tasks.c.job_id, "skip_jobs"),
                    none_of(job_tasks.c.id, "skip_tasks"),
                )
                .order_by(job_tasks.c.id)
                .limit(bindparam("limit"))
                .subquery()
            )
            branches.append(select(page))
    return union_all(*branches)


# Every claim records its worker (parameters: worker and the columns set).
_WORKER_COLUMNS: dict[str, Any] = {
    "node_name": bindparam("node_name"),
    "ram_kib": bindparam("ram_kib"),
    "cores": bindparam("cores"),
    "tags": bindparam("tags"),
    "slots": bindparam("slots"),
    "last_seen_at": bindparam("last_seen_at"),
    "stopped_at": None,
}
_WORKER_SEEN = (
    update(workers).where(workers.c.worker_id == bindparam("worker")).values(**_WORKER_COLUMNS)
)
# PostgreSQL: the same once the node's claim turn is held (see claim_turn; parameter
# node_key). The worker's id reaches the UPDATE only through the subquery that takes the
# lock, so the lock is taken first -- before the worker's row, and whether or not the row
# exists: the order every claim holds them in (see worker_alive).
_LOCKED_WORKER_SEEN = (
    update(workers)
    .where(
        workers.c.worker_id
        == select(bindparam("worker", type_=workers.c.worker_id.type))
        .select_from(select(func.pg_advisory_xact_lock(bindparam("node_key"))).subquery())
        .scalar_subquery()
    )
    .values(**_WORKER_COLUMNS)
    # (Its row, not its row count: it goes through asyncpg directly, jobtask.store.driver.)
    .returning(workers.c.worker_id)
)
# Built once: a claim runs them every time, and building (and keying) a statement of this
# size costs more than SQLite takes to answer it.
_NEXT_LEVEL = _next_level()
_PAGES = {
    (status, narrow): _page(status, narrow) for status in _CLAIMABLE for narrow in (False, True)
}
_OWNERS = _owners()
# The earliest end of a retry backoff still to come (a waiting claim wakes up then).
# A constant status, so SQLite and a cached generic plan can prove the partial
# ix_job_tasks_status_id holds the rows.
_NEXT_RUNNABLE = select(func.min(job_tasks.c.runnable_after)).where(
    job_tasks.c.status == _constant(TaskStatus.SOFT_FAILED.value),
    job_tasks.c.runnable_after > bindparam("now"),
)
# PostgreSQL locks the candidates it takes with this (see lock_candidates).
_LOCK_RUNNABLE = (
    runnable_tasks(bindparam("worker_id"))
    .where(one_of(job_tasks.c.id, "task_ids"))
    .order_by(job_tasks.c.id)
    .with_for_update(of=job_tasks, skip_locked=True)
)
# The priority column's range (a 32-bit integer on PostgreSQL).
_TOP = 2**31 - 1
_BOTTOM = -(2**31)


async def candidates(
    conn: AsyncConnection,
    worker_id: str,
    limit: int,
    *,
    now: dt.datetime,
    skip_jobs: Collection[int] = (),
    skip_tasks: Collection[int] = (),
    turns: Mapping[str, int] | None = None,
    whole: bool = False,
) -> list[Any]:
    """Up to `limit` runnable tasks, best first: by job priority, then order of arrival --
    or, given `turns` (fair share: owner -> when it was last served, 0 for never), owners
    take turns within a priority level, the least recently served first, each owner's tasks
    in order of arrival. Read without locks: the claimer locks each job, then the task.
    On PostgreSQL only their _NARROW columns (lock_candidates reads the rest), as asyncpg
    Records (jobtask.store.driver), unless `whole` (rows for whole_rows: a guarded claim,
    which takes them as read); on SQLite Rows: either read by position (CANDIDATE_ID...).

    Level by level from the highest priority, each page query stopping after `limit` rows:
    one query ordered by priority and id would read and sort every waiting task of the
    queue on each claim."""
    found: list[Any] = []
    at_most = _TOP
    base = {
        "worker_id": worker_id,
        "now": now,
        "skip_jobs": list(skip_jobs),
        "skip_tasks": list(skip_tasks),
        "limit": limit,
    }
    narrow = conn.dialect.name == "postgresql" and not whole
    while len(found) < limit:
        if turns is not None:
            level = await owners(conn, at_most)
            if level is None:
                break
            found.extend(await _fair_level(conn, base, level, turns, limit - len(found), narrow))
            if level.below is None:
                break
            at_most = level.below
            continue
        (levels,) = await driver.rows(conn, _NEXT_LEVEL, {"at_most": at_most})
        present = [level for level in levels if level is not None]
        if not present:
            break
        priority = max(present)
        rows: list[Any] = []
        for status in _CLAIMABLE:
            page = _PAGES[status, narrow]
            rows.extend(await driver.rows(conn, page, {**base, "priority": priority}))
        # Within one level, the waiting statuses interleave by arrival.
        found.extend(sorted(rows, key=_by_id))
        if priority <= _BOTTOM:
            break
        at_most = priority - 1
    return found[:limit]


def _by_id(row: Row[Any]) -> int:
    """A candidate's id (the sort key of its page's order of arrival)."""
    task_id: int = row[CANDIDATE_ID]
    return task_id


async def _fair_level(
    conn: AsyncConnection,
    base: dict[str, Any],
    level: Level,
    turns: Mapping[str, int],
    want: int,
    narrow: bool,
) -> list[Any]:
    """One priority level's runnable tasks, owners taking turns (see candidates)."""
    ordered = [
        owner
        for owner, _ in sorted(level.owners, key=lambda pair: (turns.get(pair[0], 0), pair[1]))
    ]
    found: list[Any] = []
    for start in range(0, len(ordered), OWNERS_PER_STATEMENT):
        chunk = ordered[start : start + OWNERS_PER_STATEMENT]
        params = {**base, "priority": level.priority, **{f"o{i}": o for i, o in enumerate(chunk)}}
        by_owner: dict[str, list[Any]] = {o: [] for o in chunk}
        owner_at = _OWNER_AT[narrow]
        for row in await driver.rows(conn, _owner_pages(len(chunk), narrow), params):
            by_owner[row[owner_at]].append(row)
        queues = [sorted(rows, key=_by_id) for rows in by_owner.values() if rows]
        # Round robin: one task of each owner in turn, until the pages run out.
        for i in range(max((len(q) for q in queues), default=0)):
            found.extend(q[i] for q in queues if i < len(q))
        if len(found) >= want:
            break
    return found


async def next_runnable_at(conn: AsyncConnection, now: dt.datetime) -> dt.datetime | None:
    """When the first retry backoff still running ends (None: none is)."""
    value = (await conn.execute(_NEXT_RUNNABLE, {"now": now})).scalar()
    return utc(value)


def _whole(row: Any) -> tuple[TaskRow, bool]:
    """A whole candidate of PostgreSQL (the task's columns, then failed_by_me) as a TaskRow,
    with whether this worker failed it before."""
    values = list(row)
    width = len(TASK_FIELDS)
    return task_of_values(values[:width]), bool(values[width])


def whole_rows(rows: list[Any]) -> list[tuple[TaskRow, bool]]:
    """Whole candidates (`candidates`' with `whole`) as TaskRows, each with whether this
    worker failed it before (failed_by_me)."""
    return [_whole(row) for row in rows]


async def lock_candidates(
    conn: AsyncConnection, worker_id: str, rows: list[Any], now: dt.datetime
) -> list[tuple[TaskRow, bool]]:
    """The candidates (rows of `candidates`) locked and still runnable, in the order given,
    each whole, as a TaskRow, with whether this worker failed it before (failed_by_me);
    those another claimer holds are left out.

    SQLite: the candidates as read. The claim's transaction began IMMEDIATE, so no other
    writer has committed since it read them, and what it wrote itself meanwhile (starting
    other tasks) cannot make a task unrunnable: reading them again would only cost a query.
    PostgreSQL: read again and locked in one statement, skipping other claimers' rows
    (through asyncpg directly: jobtask.store.driver)."""
    if conn.dialect.name != "postgresql":
        return [(task_row(row), bool(row[FAILED_BY_ME])) for row in rows]
    if not rows:
        return []
    params = {"worker_id": worker_id, "task_ids": [row[CANDIDATE_ID] for row in rows], "now": now}
    fresh = {row[CANDIDATE_ID]: row for row in await driver.rows(conn, _LOCK_RUNNABLE, params)}
    return [_whole(got) for got in (fresh.get(row[CANDIDATE_ID]) for row in rows) if got]


def _node_key(node_name: str) -> int:
    """The advisory lock key of a node's claim turn."""
    return int.from_bytes(hashlib.sha256(node_name.encode()).digest()[:8], "big", signed=True)


async def job_nodes(conn: AsyncConnection, job_id: int) -> Counter[str]:
    """The job's active tasks per node name."""
    rows = await conn.execute(
        select(job_tasks.c.node_name, func.count())
        .where(job_tasks.c.job_id == job_id, job_tasks.c.status == _constant(_ACTIVE))
        .group_by(job_tasks.c.node_name)
    )
    return Counter({str(node): int(n) for node, n in rows if node is not None})


async def node_reservations(conn: AsyncConnection, node_name: str) -> list[tuple[Any, Any]]:
    """(job constraints, task constraints) of every task active on the node: a walk of
    ix_job_tasks_active_job_id, which holds the active tasks only (the status a constant in
    the text, so that a cached generic plan can use it too)."""
    rows = await conn.execute(
        select(jobs.c.runtime_constraints, job_tasks.c.runtime_constraints)
        .join(jobs, jobs.c.id == job_tasks.c.job_id)
        .where(job_tasks.c.node_name == node_name, job_tasks.c.status == _constant(_ACTIVE))
    )
    return [(job_rc, task_rc) for job_rc, task_rc in rows]


async def live_workers(conn: AsyncConnection, horizon: dt.datetime) -> list[tuple[str, str, int]]:
    """(worker_id, node_name, ram_kib) of the workers seen since `horizon`."""
    rows = await conn.execute(
        select(workers.c.worker_id, workers.c.node_name, workers.c.ram_kib).where(
            workers.c.last_seen_at >= horizon
        )
    )
    return [(str(w), str(n), int(ram)) for w, n, ram in rows]


async def failed_workers(conn: AsyncConnection, task_id: int) -> set[str]:
    rows = await conn.execute(
        select(task_failures.c.worker_id).where(task_failures.c.task_id == task_id)
    )
    return {str(w) for (w,) in rows}


async def claim_turn(
    conn: AsyncConnection,
    worker_id: str,
    node_name: str,
    ram_kib: int,
    cores: int,
    now: dt.datetime,
    *,
    tags: Collection[str] = (),
    slots: int = 0,
) -> bool:
    """A claim's first step: takes the node's claim turn, then records the worker's
    description and liveness (a stopped worker claiming again is live again); True if the
    worker was not known before.

    The turn serializes claims for one node (PostgreSQL: a transaction-scoped advisory
    lock), so two replicas cannot both hand out the node's last free memory; SQLite writers
    are serialized already. On PostgreSQL the lock and the worker's UPDATE are one statement
    (_LOCKED_WORKER_SEEN), one round trip. `now` is when the claim asked (the worker's
    last_seen_at): a caller that must not start work before its turn came reads the clock
    again once this returns."""
    values = {
        "node_name": node_name,
        "ram_kib": ram_kib,
        "cores": cores,
        "tags": list(tags),
        "slots": slots,
        "last_seen_at": now,
    }
    if conn.dialect.name == "postgresql":
        params = {"worker": worker_id, "node_key": _node_key(node_name), **values}
        if await driver.rows(conn, _LOCKED_WORKER_SEEN, params):
            return False
    elif (await conn.execute(_WORKER_SEEN, {"worker": worker_id, **values})).rowcount:
        return False
    # Two first claims of one worker may race (a worker with several slots): one inserts.
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    inserted = await conn.execute(
        dialect_insert(workers)
        .values(worker_id=worker_id, first_seen_at=now, **values)
        .on_conflict_do_nothing(index_elements=[workers.c.worker_id])
    )
    return bool(inserted.rowcount)


async def worker_alive(conn: AsyncConnection, worker_id: str, now: dt.datetime) -> None:
    """A worker busy running tasks (not claiming) is still live.

    Callers hold a job's or a task's row lock, while a claim of the same worker locks the
    worker's row first and then jobs and tasks: waiting here could close a deadlock cycle
    (PostgreSQL). If the row is locked, that claim is recording the worker's liveness
    itself, so skipping it loses nothing."""
    row = select(workers.c.worker_id).where(workers.c.worker_id == worker_id)
    if conn.dialect.name == "postgresql":
        row = row.with_for_update(skip_locked=True)
    await conn.execute(
        update(workers).where(workers.c.worker_id == row.scalar_subquery()).values(last_seen_at=now)
    )
