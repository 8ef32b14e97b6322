"""Attempt history: every attempt at a task, or at every task of a job, for whoever may read
the task or the job (the same rule as GetTask and GetJob: its owner, or an admin)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from jobtask.domain.access import may_read
from jobtask.domain.errors import InvalidArgument, NotFound
from jobtask.domain.uuids import JOB_INFIX, TASK_INFIX, check_uuid
from jobtask.manager.context import Caller
from jobtask.store import attempts as queries
from jobtask.store.attempts import AttemptRow
from jobtask.store.database import Database
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["AttemptHistory", "AttemptPage"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

AttemptPage = tuple[list[AttemptRow], int, int]


def page_size(limit: int | None, offset: int | None) -> tuple[int, int]:
    if limit is not None and limit < 0:
        raise InvalidArgument("limit", "must not be negative")
    if offset is not None and offset < 0:
        raise InvalidArgument("offset", "must not be negative")
    return (DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)), offset or 0


@dataclass(frozen=True)
class _Source:
    """Where a kind of object's attempts come from."""

    name: str
    infix: str
    owner: Callable[[AsyncConnection, str], Awaitable[tuple[int, str] | None]]
    rows: Callable[[AsyncConnection, int, int, int], Awaitable[list[AttemptRow]]]
    count: Callable[[AsyncConnection, int], Awaitable[int]]


_TASK = _Source(
    "task", TASK_INFIX, queries.task_owner, queries.task_attempts_of, queries.count_task_attempts
)
_JOB = _Source(
    "job", JOB_INFIX, queries.job_owner, queries.job_attempts, queries.count_job_attempts
)


class AttemptHistory:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def of_task(
        self, caller: Caller, uuid: str, limit: int | None = None, offset: int | None = None
    ) -> AttemptPage:
        """A page of the task's attempts, oldest first, the page size and how many in all."""
        return await self._page(_TASK, caller, uuid, limit, offset)

    async def of_job(
        self, caller: Caller, uuid: str, limit: int | None = None, offset: int | None = None
    ) -> AttemptPage:
        """A page of the attempts at the job's tasks, oldest first."""
        return await self._page(_JOB, caller, uuid, limit, offset)

    async def _page(
        self, source: _Source, caller: Caller, uuid: str, limit: int | None, offset: int | None
    ) -> AttemptPage:
        check_uuid(uuid, source.infix, "uuid")
        size, skip = page_size(limit, offset)
        async with self.db.snapshot() as conn:
            found = await source.owner(conn, uuid)
            if found is None or not may_read(caller, found[1]):
                raise NotFound(f"{source.name} {uuid} not found")
            rows = await source.rows(conn, found[0], size, skip)
            return rows, size, await source.count(conn, found[0])
