"""The worker registry's queries: workers as recorded, the tasks they run, their attempts."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from jobtask.domain.statuses import TaskStatus
from jobtask.store import row_cache
from jobtask.store.database import mark_changed
from jobtask.store.rows import utc
from jobtask.store.schema import job_tasks, task_attempts, workers
from sqlalchemy import Row, and_, bindparam, delete, func, literal_column, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "RunningTask",
    "WorkerRow",
    "attempt_counts",
    "count_workers",
    "get_worker",
    "list_workers",
    "mark_stopped",
    "prune",
    "running_tasks",
]

_FINISHED = (TaskStatus.COMPLETED.value,)
_FAILED = (TaskStatus.FAILED.value, TaskStatus.SOFT_FAILED.value)


@dataclass(frozen=True)
class WorkerRow:
    worker_id: str
    node_name: str
    ram_kib: int
    cores: int
    tags: tuple[str, ...]
    slots: int
    first_seen_at: dt.datetime | None
    last_seen_at: dt.datetime
    stopped_at: dt.datetime | None


@dataclass(frozen=True)
class RunningTask:
    worker_id: str
    task_uuid: str
    owner_uuid: str


def _worker(row: Row[tuple[object, ...]]) -> WorkerRow:
    m = row._mapping
    last_seen = utc(m["last_seen_at"])
    assert last_seen is not None  # NOT NULL
    tags = m["tags"] or []
    return WorkerRow(
        worker_id=str(m["worker_id"]),
        node_name=str(m["node_name"]),
        ram_kib=int(m["ram_kib"]),
        cores=int(m["cores"]),
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
        slots=int(m["slots"]),
        first_seen_at=utc(m["first_seen_at"]),
        last_seen_at=last_seen,
        stopped_at=utc(m["stopped_at"]),
    )


_LIST = (
    select(workers)
    .order_by(workers.c.last_seen_at.desc(), workers.c.worker_id)
    .limit(bindparam("limit"))
    .offset(bindparam("offset"))
)
_COUNT = select(func.count()).select_from(workers)
_GET = select(workers).where(workers.c.worker_id == bindparam("worker_id"))
# Through ix_job_tasks_active_job_id, which holds the active tasks only: the status is a
# constant in the text (a cached generic plan proves it too), and no ORDER BY (the index
# gives no id order: the rows are sorted here).
_RUNNING = select(
    job_tasks.c.id, job_tasks.c.worker_id, job_tasks.c.uuid, job_tasks.c.owner_uuid
).where(
    job_tasks.c.status == literal_column(f"'{TaskStatus.ACTIVE.value}'"),
    job_tasks.c.worker_id.in_(bindparam("ids", expanding=True)),
)
_ATTEMPTS = (
    select(task_attempts.c.worker_id, task_attempts.c.outcome, func.count())
    .where(
        task_attempts.c.worker_id.in_(bindparam("ids", expanding=True)),
        task_attempts.c.outcome.in_([*_FINISHED, *_FAILED]),
    )
    .group_by(task_attempts.c.worker_id, task_attempts.c.outcome)
)
_STOP = (
    update(workers)
    .where(workers.c.worker_id == bindparam("worker"))
    .values(stopped_at=bindparam("now"))
)


def _prune(dialect: str) -> Any:
    """Deletes up to `limit` workers stopped and not seen since `stopped_before`, or not seen
    since `lost_before`. PostgreSQL: rows another transaction holds are skipped, not waited
    for -- a claim locks its worker's row, and a worker seen again is no longer prunable."""
    prunable = (
        select(workers.c.worker_id)
        .where(
            or_(
                and_(
                    workers.c.stopped_at.is_not(None),
                    workers.c.last_seen_at < bindparam("stopped_before"),
                ),
                workers.c.last_seen_at < bindparam("lost_before"),
            )
        )
        .limit(bindparam("limit"))
    )
    if dialect == "postgresql":
        prunable = prunable.with_for_update(skip_locked=True)
    return delete(workers).where(workers.c.worker_id.in_(prunable.scalar_subquery()))


_PRUNES = {dialect: _prune(dialect) for dialect in ("sqlite", "postgresql")}


async def list_workers(conn: AsyncConnection, limit: int, offset: int) -> list[WorkerRow]:
    """Workers by last sign of life, newest first."""
    rows = await conn.execute(_LIST, {"limit": limit, "offset": offset})
    return [_worker(r) for r in rows]


async def count_workers(conn: AsyncConnection) -> int:
    return int((await conn.execute(_COUNT)).scalar() or 0)


async def get_worker(conn: AsyncConnection, worker_id: str) -> WorkerRow | None:
    row = (await conn.execute(_GET, {"worker_id": worker_id})).first()
    return None if row is None else _worker(row)


async def running_tasks(conn: AsyncConnection, worker_ids: Collection[str]) -> list[RunningTask]:
    """The active tasks of these workers, in order of arrival."""
    if not worker_ids:
        return []
    rows = sorted(await conn.execute(_RUNNING, {"ids": list(worker_ids)}))
    return [RunningTask(str(w), str(u), str(o)) for _, w, u, o in rows]


async def attempt_counts(
    conn: AsyncConnection, worker_ids: Collection[str]
) -> dict[str, tuple[int, int]]:
    """(finished, failed) attempts per worker: ended with the task completed, or failed
    (for good or temporarily)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    if worker_ids:
        for worker_id, outcome, n in await conn.execute(_ATTEMPTS, {"ids": list(worker_ids)}):
            counts[str(worker_id)][0 if outcome in _FINISHED else 1] += int(n)
    return {w: (c[0], c[1]) for w, c in counts.items()}


async def mark_stopped(conn: AsyncConnection, worker_id: str, now: dt.datetime) -> bool:
    """The worker said goodbye; False if it is unknown."""
    result = await conn.execute(_STOP, {"worker": worker_id, "now": now})
    if result.rowcount:
        mark_changed(conn)
    return bool(result.rowcount)


async def prune(
    conn: AsyncConnection, *, stopped_before: dt.datetime, lost_before: dt.datetime, limit: int
) -> int:
    """One batch of the registry's pruning (see _prune); how many workers it deleted.
    Nothing references a worker's row: attempts, failures and blocklists name it by id."""
    params = {"stopped_before": stopped_before, "lost_before": lost_before, "limit": limit}
    with row_cache.other_tables(conn):  # (the workers table: SQLite's kept rows stay valid)
        result = await conn.execute(_PRUNES[conn.dialect.name], params)
    return int(result.rowcount or 0)
