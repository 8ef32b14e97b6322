"""Other processes hear of a commit that appended events without the transaction sending a
NOTIFY of its own (a round trip made while it held its jobs' rows): the events' INSERT
notifies, through a trigger (migration 0019). A transaction that changed something else
(the set of live workers) still sends its NOTIFY."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from jobtask.store import feed
from jobtask.store.database import NOTIFY_CHANNEL, Database, mark_changed
from jobtask.store.migrate import upgrade
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.core.raw_rows import connect
from tests.engines import counting
from tests.polling import DEADLINE

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
