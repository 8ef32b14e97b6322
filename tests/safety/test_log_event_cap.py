"""A task attempt's log events are capped (issue 13, smaller items): past
JOBTASK_TASK_LOG_EVENT_LIMIT bytes its chunks are not stored as events, and one marker
event says how much was dropped. The task's log column still keeps its last 64 KiB."""

from __future__ import annotations

import pytest
from jobtask.store import feed
from jobtask.store.schema import events
from sqlalchemy import select

from tests.conftest import start_cluster
from tests.core.helpers import create_job, get_task
from tests.worker_protocol.helpers import Run, claim_as

LIMIT = 3000


async def test_log_events_stop_at_the_limit_with_one_marker(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBTASK_TASK_LOG_EVENT_LIMIT", str(LIMIT))
    cluster = await start_cluster(database_url, lease_ttl=3.0)
    try:
        await cluster.jobs.CreateJob(create_job(script="chatty.py"))
        a = await claim_as(cluster, "w1")
        assert a is not None
        run = Run(cluster, a)
        line = "é" * 499 + "\n"  # 999 bytes: the cut falls inside a character
        for _ in range(10):
            seq = await run.send(log=line)
            await run.acked(seq)
        await run.exit(progress=1.0, success=True, log="the end\n")
        query = (
            select(events.c.payload)
            .where(events.c.task_uuid == a.task.uuid, events.c.type == feed.TASK_LOG)
            .order_by(events.c.seq)
        )
        async with cluster.services.core.db.read() as conn:
            logs = [row.payload["log"] for row in await conn.execute(query)]
        task = await get_task(cluster, a.task.uuid)
    finally:
        await cluster.close()
    stored = "".join(logs[:-1])
    assert len(stored.encode()) <= LIMIT and len(stored.encode()) > LIMIT - 4
    assert stored == (line * 10)[: len(stored)]
    dropped = len((line * 10 + "the end\n").encode()) - len(stored.encode())
    assert logs[-1] == f"[log truncated: {dropped} bytes dropped]\n"
    assert task.log.endswith("the end\n")  # the column is not cut by the cap
