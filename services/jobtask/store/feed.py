"""The change feed: events appended in the same transaction as the changes they report.
Inserting events notifies the other processes on PostgreSQL (a trigger: migration 0019)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from jobtask.store import flush_sql
from jobtask.store.database import mark_changed
from jobtask.store.rows import job_payload, task_payload
from jobtask.store.schema import events, settings
from sqlalchemy import Integer, bindparam, delete, func, insert, select, text, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection

# Event types (WatchEventType without its prefix).
JOB_CHANGED = "job_changed"
TASK_CREATED = "task_created"
TASK_CHANGED = "task_changed"
TASK_PROGRESS = "task_progress"
TASK_LOG = "task_log"
TASK_DELETED = "task_deleted"

PRUNED_BEFORE = "events_pruned_before"
_PRUNE_LOCK_KEY = 0x6A6F627072756E  # "jobprun"


# Built once: every task write appends through it.
_INSERT = insert(events)
_JOB_HEAD = select(func.max(events.c.seq)).where(events.c.job_uuid == bindparam("job_uuid"))


async def append(
    conn: AsyncConnection,
    job_uuid: str,
    type_: str,
    payload: dict[str, Any],
    *,
    task_uuid: str | None = None,
    now: dt.datetime,
) -> None:
    row = {
        "created_at": now,
        "job_uuid": job_uuid,
        "task_uuid": task_uuid,
        "type": type_,
        "payload": payload,
    }
    await conn.execute(_INSERT, row)
    mark_changed(conn, notified=True)


async def append_many(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Events in the order given (their seq follows it), in one statement: an executemany
    on SQLite, one INSERT on PostgreSQL (jobtask.store.flush_sql)."""
    if rows:
        await flush_sql.send(conn, flush_sql.Flush(events=flush_sql.event_values(rows)))


def full_payload(type_: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """An event's payload as a reader of the JSON wants it: a job's or a task's in full
    (every public column, defaults and derived attributes included: rows.job_payload,
    rows.task_payload), as stored payloads leave them out; any other as stored."""
    if type_ == JOB_CHANGED:
        return job_payload(payload)
    if type_ in (TASK_CREATED, TASK_CHANGED):
        return task_payload(payload)
    return dict(payload)


async def head(conn: AsyncConnection) -> int:
    """The last sequence number written (0 if none)."""
    value = (await conn.execute(select(func.max(events.c.seq)))).scalar()
    return int(value or 0)


async def job_head(conn: AsyncConnection, job_uuid: str) -> int:
    """The sequence number of the job's last event still kept (0 if none)."""
    value = (await conn.execute(_JOB_HEAD, {"job_uuid": job_uuid})).scalar()
    return int(value or 0)


_PRUNED_BEFORE = select(settings.c.value).where(settings.c.name == PRUNED_BEFORE)


async def pruned_before(conn: AsyncConnection) -> int:
    """Events with seq <= this were pruned: resuming from an older position is impossible."""
    value = (await conn.execute(_PRUNED_BEFORE)).scalar()
    return int(value or 0)


async def read_after(
    conn: AsyncConnection, job_uuid: str, after_seq: int, limit: int = 500
) -> list[dict[str, Any]]:
    found = await read_jobs_after(conn, {job_uuid: (after_seq, limit)})
    return found[job_uuid]


# Jobs read by one statement at most (read_jobs_after): its text, and so its plan, is one of
# this many, each built once.
READ_JOBS_AT_ONCE = 16
_READS: dict[int, Any] = {}


def _read_statement(n: int) -> Any:
    """The events of n jobs, each after its own position and up to its own limit: one
    statement, a UNION ALL of per-job index range scans (ix_events_job_uuid_seq), as a
    process's watch streams of several jobs wake together on every commit."""
    statement = _READS.get(n)
    if statement is None:
        parts = [
            select(events)
            .where(
                events.c.job_uuid == bindparam(f"job_{i}"),
                events.c.seq > bindparam(f"after_{i}"),
            )
            .order_by(events.c.seq)
            .limit(bindparam(f"limit_{i}", type_=Integer))
            for i in range(n)
        ]
        # SQLite takes a part's ORDER BY and LIMIT inside a UNION ALL only in a subquery.
        statement = parts[0] if n == 1 else union_all(*(select(part.subquery()) for part in parts))
        _READS[n] = statement
    return statement


async def read_jobs_after(
    conn: AsyncConnection, asks: Mapping[str, tuple[int, int]]
) -> dict[str, list[dict[str, Any]]]:
    """Per job of `asks` (job uuid: (after_seq, limit)), its events after after_seq in seq
    order, at most limit; in one statement per READ_JOBS_AT_ONCE jobs."""
    found: dict[str, list[dict[str, Any]]] = {job: [] for job in asks}
    items = list(asks.items())
    for start in range(0, len(items), READ_JOBS_AT_ONCE):
        chunk = items[start : start + READ_JOBS_AT_ONCE]
        params: dict[str, Any] = {}
        for i, (job, (after, limit)) in enumerate(chunk):
            params[f"job_{i}"], params[f"after_{i}"], params[f"limit_{i}"] = job, after, limit
        rows = await conn.execute(_read_statement(len(chunk)), params)
        for row in rows:
            mapping = dict(row._mapping)
            found[mapping["job_uuid"]].append(mapping)
    # A UNION ALL's parts come out in order in practice; SQL does not promise it.
    for rows_of_job in found.values():
        rows_of_job.sort(key=_seq_of)
    return found


def _seq_of(row: Mapping[str, Any]) -> int:
    return int(row["seq"])


async def prune(conn: AsyncConnection, *, keep_events: int, older_than: dt.datetime) -> int:
    """Deletes the events that are both older than `older_than` and not among the last
    `keep_events`, and raises the pruning watermark to the last deleted seq.

    One global watermark, not one per job: a watcher's position is a point in the whole
    feed, so "is after_seq still resumable" must be a single comparison that can't lie.
    Returns the number of events deleted.
    """
    if conn.dialect.name == "postgresql":
        # Replicas prune on their own timers: one at a time, so the watermark only rises.
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PRUNE_LOCK_KEY})
    last = await head(conn)
    by_count = last - keep_events
    by_age = (
        await conn.execute(select(func.max(events.c.seq)).where(events.c.created_at < older_than))
    ).scalar() or 0
    watermark = min(by_count, int(by_age))
    current = await pruned_before(conn)
    if watermark <= current:
        return 0
    result = await conn.execute(delete(events).where(events.c.seq <= watermark))
    await _set_setting(conn, PRUNED_BEFORE, str(watermark))
    return int(result.rowcount or 0)


async def _set_setting(conn: AsyncConnection, name: str, value: str) -> None:
    result = await conn.execute(update(settings).where(settings.c.name == name).values(value=value))
    if not result.rowcount:
        await conn.execute(insert(settings).values(name=name, value=value))
