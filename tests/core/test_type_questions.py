"""asyncpg knows only text[] and oid[] of PostgreSQL's array types without asking the server
(MagicStack/asyncpg#1272): any other one a statement binds or returns, it looks up in the
catalog the first time on each connection, a query that costs the database ~11 ms to plan.
The store's statements bring seven; each new connection asked three or four times, on the
first claims, report groups and submissions it served.

A server's connections now learn the store's array types once each, as they open
(jobtask.store.database.ARRAY_TYPES), and ask nothing more: not for a fan-out's statements,
and not after the migration that created the schema (SQLAlchemy has a connection that ran
DDL forget its types; the migrating connection is closed, not pooled). Read from asyncpg's
own lookup, counted per server process of the database."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest
from jobtask.store.database import ARRAY_TYPES, WARM_CONNECTIONS
from jobtask.v1 import task_service_pb2

from tests.conftest import running_cluster
from tests.core.helpers import JS, claim, create_job, get_job, succeed, task, token_md
from tests.polling import eventually

pytestmark = pytest.mark.postgres

CHILDREN = 12

Lookup = Callable[..., Awaitable[Any]]


@pytest.fixture
def questions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, tuple[int, ...]]]:
    """(server process id, type oids) of every catalog lookup asyncpg makes from now on."""
    asked: list[tuple[int, tuple[int, ...]]] = []
    lookup: Lookup = asyncpg.Connection._introspect_types

    async def counted(self: asyncpg.Connection, typeoids: Sequence[int], *rest: Any) -> Any:
        asked.append((self.get_server_pid(), tuple(sorted(typeoids))))
        return await lookup(self, typeoids, *rest)

    monkeypatch.setattr(asyncpg.Connection, "_introspect_types", counted)
    return asked


async def test_each_connection_asks_for_the_array_types_once(
    empty_postgres_url: str, questions: list[tuple[int, tuple[int, ...]]]
) -> None:
    async with running_cluster(empty_postgres_url) as c:
        started = len(questions)
        # The migrating connection (closed after) and the first connections the server
        # opened before it served (Database.warm), each having asked for all of them.
        assert started == 1 + WARM_CONNECTIONS
        assert {len(oids) for _, oids in questions} == {len(ARRAY_TYPES)}
        job = await c.jobs.CreateJob(create_job(script="fanout", allow_duplicate=True))
        first = await claim(c)
        request = task_service_pb2.BatchCreateTasksRequest()
        for n in range(CHILDREN):
            made = task(job_uuid=job.uuid, sequence=1, created_by_job_task_uuid=first.task.uuid)
            made.parameters["n"] = n
            request.requests.add(job_task=made)
        await c.tasks.BatchCreateTasks(request, metadata=token_md(first.task_token))
        await succeed(c, first)
        # The children, claimed and finished concurrently: the pool opens more connections
        # than the warm ones, each of which asks once as it opens.
        children = await asyncio.gather(*(claim(c, f"w{n}", f"node{n}") for n in range(CHILDREN)))
        assert all(children)
        await asyncio.gather(*(succeed(c, a, output=f"{n}\n") for n, a in enumerate(children)))

        async def completed() -> bool:
            return (await get_job(c, job.uuid)).status == JS.JOB_STATUS_COMPLETED

        await eventually(completed)
    per_connection = Counter(pid for pid, _ in questions)
    assert max(per_connection.values()) == 1, questions
    assert {len(oids) for _, oids in questions} == {len(ARRAY_TYPES)}, questions
