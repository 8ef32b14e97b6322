"""The change feed: events appended in the same transaction as the changes they report."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobtask.store.schema import events, settings
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

# Event types (WatchEventType without its prefix).
JOB_CHANGED = "job_changed"
TASK_CREATED = "task_created"
TASK_CHANGED = "task_changed"
TASK_PROGRESS = "task_progress"
TASK_LOG = "task_log"
TASK_DELETED = "task_deleted"

PRUNED_BEFORE = "events_pruned_before"


async def append(
    conn: AsyncConnection,
    job_uuid: str,
    type_: str,
    payload: dict[str, Any],
    *,
    task_uuid: str | None = None,
    now: dt.datetime,
) -> None:
    await conn.execute(
        insert(events).values(
            created_at=now, job_uuid=job_uuid, task_uuid=task_uuid, type=type_, payload=payload
        )
    )


async def append_many(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(events), rows)


async def head(conn: AsyncConnection) -> int:
    """The last sequence number written (0 if none)."""
    value = (await conn.execute(select(func.max(events.c.seq)))).scalar()
    return int(value or 0)


async def pruned_before(conn: AsyncConnection) -> int:
    """Events with seq <= this were pruned: resuming from an older position is impossible."""
    value = (
        await conn.execute(select(settings.c.value).where(settings.c.name == PRUNED_BEFORE))
    ).scalar()
    return int(value or 0)


async def read_after(
    conn: AsyncConnection, job_uuid: str, after_seq: int, limit: int = 500
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(events)
        .where(events.c.job_uuid == job_uuid, events.c.seq > after_seq)
        .order_by(events.c.seq)
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]
