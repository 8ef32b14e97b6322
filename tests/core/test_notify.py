"""Other processes hear of a commit that appended events without the transaction sending a
NOTIFY of its own (a round trip made while it held its jobs' rows): the events' INSERT
notifies, through a trigger (migration 0019). A transaction that changed something else
(the set of live workers) still sends its NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import pytest
from jobtask.server.changes import ChangeSignal
from jobtask.server.listen import listen_forever
from jobtask.store import feed
from jobtask.store.database import NOTIFY_CHANNEL, Database, mark_changed
from jobtask.store.migrate import upgrade
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.core.raw_rows import connect
from tests.engines import counting
from tests.polling import DEADLINE, eventually

pytestmark = pytest.mark.postgres


async def test_appending_events_notifies_without_a_notify_statement(postgres_url: str) -> None:
    db = Database(postgres_url)
    await upgrade(db)
    listener = await connect(postgres_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: heard.put_nowait(args[2]))
    now = dt.datetime.now(dt.UTC)
    job = "zzzzz-8i9sb-000000000000001"

    async def append(conn: AsyncConnection) -> None:
        await feed.append(conn, job, feed.JOB_CHANGED, {"n": 1}, now=now)
        await feed.append_many(
            conn,
            [
                {
                    "created_at": now,
                    "job_uuid": job,
                    "task_uuid": None,
                    "type": feed.JOB_CHANGED,
                    "payload": {"n": n},
                }
                for n in (2, 3)
            ],
        )

    async def other_change(conn: AsyncConnection) -> None:
        mark_changed(conn)

    try:
        with counting(db) as sent:
            await db.transact(append)
        assert not [s for s in sent if s.startswith("NOTIFY")]
        assert await asyncio.wait_for(heard.get(), DEADLINE) == NOTIFY_CHANNEL
        await asyncio.sleep(0.2)
        assert heard.empty()  # one notification for the transaction, not one per INSERT

        with counting(db) as sent:
            await db.transact(other_change)
        assert [s for s in sent if s.startswith("NOTIFY")]
        assert await asyncio.wait_for(heard.get(), DEADLINE) == NOTIFY_CHANNEL
    finally:
        await listener.close()
        await db.dispose()


async def test_a_process_does_not_hear_its_own_commits_twice(postgres_url: str) -> None:
    """A commit of this process notified its waiters as it committed (Database.on_commit):
    its NOTIFY, heard back on the LISTEN connection, wakes nobody a second time. Another
    process's commit (another Database: other sessions) still does, every one."""
    ours, theirs = Database(postgres_url), Database(postgres_url)
    await upgrade(ours)
    signal = ChangeSignal()
    listening = asyncio.create_task(listen_forever(ours.url, signal, own=ours.own_notification))

    async def change(conn: AsyncConnection) -> None:
        mark_changed(conn)

    async def heard(n: int) -> bool:
        return signal.notifications >= n

    try:
        await eventually(lambda: heard(1))  # listening (it notifies once connected)
        await theirs.transact(change)
        await eventually(lambda: heard(2))
        for _ in range(3):
            await ours.transact(change)
        await theirs.transact(change)
        # Delivered in commit order: once the last is heard, ours were too (or skipped).
        await eventually(lambda: heard(3))
        assert signal.notifications == 3
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await ours.dispose()
        await theirs.dispose()
