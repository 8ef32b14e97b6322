"""TaskWrites.flush at the driver's level (jobtask.store.flush_sql): what it stores is what
SQLAlchemy's own statements store, value for value (SQLite keeps datetimes and JSON as text
of SQLAlchemy's making), and on PostgreSQL a whole flush is one statement -- one round trip
while the caller holds its jobs' rows, NOTIFY included -- whose events keep the order they
were taken in."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobtask.domain.statuses import TaskStatus
from jobtask.store import attempts, feed
from jobtask.store.jobs import job_by_uuid
from jobtask.store.rows import TaskRow, task_row
from jobtask.store.schema import events, job_tasks, task_attempts
from jobtask.store.task_writes import TaskWrites, write_task_row
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import Cluster
from tests.engines import counting
from tests.worker_protocol.helpers import job_with_tasks

USER = "zzzzz-tpzed-000000000000000"
CLIENT = "zzzzz-ozdt8-000000000000001"
NOW = dt.datetime(2026, 12, 5, 3, 4, 5, 123456, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(seconds=1, microseconds=7)

# Every kind of column a claim or a report writes: text, numbers, booleans, bytes,
# datetimes, JSON (an object and None, which SQLAlchemy stores as JSON null).
FIRST: dict[str, Any] = {
    "status": TaskStatus.ACTIVE.value,
    "started_at": NOW,
    "attempt": 1,
    "worker_id": "w-rt",
    "node_name": "node-rt",
    "lease_id": "lease-rt",
    "lease_expires_at": LATER,
    "token_digest": b"\x00\x01digest" * 4,
    "failure_reason": None,
}
SECOND: dict[str, Any] = {
    "progress": 0.25,
    "output": "out\n",
    "success": True,
    "failed_count": 2,
    "failure_reason": {"rule": "x", "tail": ["é", 1, None]},
    "runnable_after": None,
    "log": "ü log",
}
WRITTEN = sorted({*FIRST, *SECOND, "version", "modified_at", "modified_by_user_uuid"})


async def _tasks(conn: AsyncConnection, job_uuid: str) -> list[TaskRow]:
    job = await job_by_uuid(conn, job_uuid)
    assert job is not None
    rows = await conn.execute(
        select(job_tasks).where(job_tasks.c.job_id == job.id).order_by(job_tasks.c.id)
    )
    return [task_row(row) for row in rows]


async def _stored(conn: AsyncConnection, sql: str, *ids: Any) -> list[tuple[Any, ...]]:
    """Rows as the database keeps them: every value cast to text by the database."""
    mark = "?" if conn.dialect.name == "sqlite" else "$1"
    out = []
    for row_id in ids:
        rows = await conn.exec_driver_sql(sql.format(mark=mark), (row_id,))
        out.append(tuple(rows.one()))
    return out


def _as_text(table: Any, columns: list[str], key: str, where: str = "") -> str:
    cast = ", ".join(f'CAST("{c}" AS TEXT)' for c in columns)
    return f"SELECT {cast} FROM {table.name} WHERE {key} = {{mark}}{where}"


async def test_a_flush_stores_what_sqlalchemy_stores(cluster: Cluster) -> None:
    core = cluster.services.core
    job_uuid = await job_with_tasks(cluster, "flush-rt.py", 1)

    async def run(conn: AsyncConnection) -> None:
        job = await job_by_uuid(conn, job_uuid)
        assert job is not None
        plain, fast = await _tasks(conn, job_uuid)
        # Through SQLAlchemy's statements: two writes of one task, an attempt opened and
        # closed, an event.
        for changes, now in ((FIRST, NOW), (SECOND, LATER)):
            await write_task_row(conn, plain.id, changes, now=now, user_uuid=USER, client_uuid=None)
        opened = {"attempt": 1, "worker_id": "w-rt", "node_name": "n", "started_at": NOW}
        await conn.execute(insert(task_attempts), {**opened, "task_id": plain.id, "lease_id": "a"})
        ending: dict[str, Any] = {
            "ended": LATER,
            "outcome": "success",
            "exit_code": 0,
            "signal": None,
            "lease_expires": NOW,
        }
        await attempts.close_attempt(conn, plain.id, 1, **ending)
        payload = {"progress": 0.5, "at": NOW.isoformat(), "none": None}
        await feed.append(conn, job_uuid, "t", payload, task_uuid=plain.uuid, now=NOW)
        # The same through a TaskWrites: the two writes merged into one row's write.
        writes = TaskWrites()
        task = writes.write_task(
            job, fast, FIRST, now=NOW, user_uuid=USER, client_uuid=None, event=None
        )
        task = writes.write_task(job, task, SECOND, now=LATER, user_uuid=USER, client_uuid=None)
        writes.open_attempt({**opened, "task_id": fast.id, "lease_id": "b"})
        await writes.flush(conn)
        writes.close_attempt(task, **ending)
        writes.event(job_uuid, "t", payload, task_uuid=fast.uuid, now=NOW)
        await writes.flush(conn)

        # Read back through SQLAlchemy: the same rows.
        plain_after, fast_after = await _tasks(conn, job_uuid)
        for name in WRITTEN:
            assert getattr(fast_after, name) == getattr(plain_after, name), name
        assert fast_after.modified_by_client_uuid is None
        # And stored alike, byte for byte of their text.
        sql = _as_text(job_tasks, WRITTEN, "id")
        mine, theirs = await _stored(conn, sql, fast.id, plain.id)
        assert mine == theirs
        columns = [c.name for c in task_attempts.c if c.name not in ("id", "task_id", "lease_id")]
        mine, theirs = await _stored(conn, _as_text(task_attempts, columns, "lease_id"), "b", "a")
        assert mine == theirs
        assert "success" in mine
        columns = ["created_at", "job_uuid", "type", "payload"]
        mine, theirs = await _stored(
            conn, _as_text(events, columns, "task_uuid", " AND type = 't'"), fast.uuid, plain.uuid
        )
        assert mine == theirs

    await core.db.transact(run)


async def test_a_flush_is_one_statement_on_postgresql_and_keeps_the_events_order(
    cluster: Cluster,
) -> None:
    core = cluster.services.core
    uuids = [await job_with_tasks(cluster, f"flush-order-{i}.py", 2) for i in range(2)]
    taken: list[tuple[str, str | None]] = []

    async def run(conn: AsyncConnection) -> list[str]:
        jobs = [await job_by_uuid(conn, uuid) for uuid in uuids]
        tasks = [await _tasks(conn, uuid) for uuid in uuids]
        writes = TaskWrites()
        # Interleaved: a task of one job, then of the other; a progress event between.
        for i in range(3):
            for job, job_tasks_ in zip(jobs, tasks, strict=True):
                assert job is not None
                task = writes.write_task(
                    job,
                    job_tasks_[i],
                    {"status": TaskStatus.ACTIVE.value, "lease_id": f"l-{job.id}-{i}"},
                    now=NOW,
                    user_uuid=USER,
                    client_uuid=CLIENT,
                )
                writes.open_attempt(
                    {
                        "task_id": task.id,
                        "attempt": 1,
                        "lease_id": f"l-{job.id}-{i}",
                        "worker_id": "w",
                        "node_name": "n",
                        "started_at": NOW,
                    }
                )
                taken.append((job.uuid, task.uuid))
                writes.event(job.uuid, feed.TASK_LOG, {"i": i}, task_uuid=None, now=NOW)
                taken.append((job.uuid, None))
        before = len(whole)  # (the statements of the whole transaction, counted below)
        await writes.flush(conn)
        return whole[before:]

    with counting(core.db) as whole:
        sent = await core.db.transact(run)
    if core.db.dialect == "postgresql":
        assert len(sent) == 1, sent
        # The events' INSERT notifies (a trigger): the commit sends no NOTIFY of its own.
        assert not [s for s in whole if s.startswith("NOTIFY")], whole
    else:
        # One executemany per kind: tasks, counts, attempts opened, events.
        assert len(sent) == 4, sent

    async with core.db.read() as conn:
        rows = await conn.execute(
            select(events.c.job_uuid, events.c.task_uuid, events.c.type)
            .where(events.c.job_uuid.in_(uuids), events.c.type != feed.TASK_CREATED)
            .where(events.c.type != feed.JOB_CHANGED)
            .order_by(events.c.seq)
        )
        assert [(r.job_uuid, r.task_uuid) for r in rows] == taken
        for uuid in uuids:
            job = await job_by_uuid(conn, uuid)
            assert job is not None
            assert (job.n_queued, job.n_active) == (0, 3)
            rows = await conn.execute(
                select(task_attempts.c.lease_id)
                .join(job_tasks, job_tasks.c.id == task_attempts.c.task_id)
                .where(job_tasks.c.job_id == job.id)
            )
            assert len(list(rows)) == 3


async def test_a_settle_writes_its_jobs_and_events_in_one_statement(cluster: Cluster) -> None:
    """TaskWrites.write_job (a settle's job moves) goes through the flush's statements:
    the jobs' columns (text, times, JSON with non-ASCII, numbers) as given, their events
    in order; one statement on PostgreSQL, one executemany per kind on SQLite."""
    core = cluster.services.core
    uuids = [await job_with_tasks(cluster, f"s{n}.py", 0) for n in range(2)]

    async def run(conn: AsyncConnection) -> list[str]:
        writes = TaskWrites()
        for n, uuid in enumerate(uuids):
            job = await job_by_uuid(conn, uuid)
            assert job is not None
            extra = {"failure_reason": {"why": ["é", 1]}} if n else {}
            written = {
                "status": "active",
                "started_at": NOW,
                "output": "o\n",
                "version": job.version + 1,
                "modified_at": LATER,
                **extra,
            }
            assert writes.write_job(job, written) == written
            writes.event(uuid, feed.JOB_CHANGED, {"n": n}, task_uuid=None, now=NOW)
        before = len(whole)
        await writes.flush(conn)
        return whole[before:]

    with counting(core.db) as whole:
        sent = await core.db.transact(run)
    # SQLite: two sets of columns, then the events.
    assert len(sent) == (1 if core.db.dialect == "postgresql" else 3), sent
    async with core.db.read() as conn:
        for n, uuid in enumerate(uuids):
            job = await job_by_uuid(conn, uuid)
            assert job is not None
            assert (job.status.value, job.started_at, job.output) == ("active", NOW, "o\n")
            assert job.modified_at == LATER
            assert job.failure_reason == ({"why": ["é", 1]} if n else None)
            found = await conn.execute(
                select(events.c.payload).where(
                    events.c.job_uuid == uuid, events.c.type == feed.JOB_CHANGED
                )
            )
            assert {"n": n} in [row.payload for row in found]
