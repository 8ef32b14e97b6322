"""Grouped transactions: independent write transactions of concurrent callers committed
together, one commit for a group.

On PostgreSQL every commit waits for its WAL flush, so thirty-two clients submitting jobs at
once paid thirty-two flushes one after another: submissions ran at about 160 jobs/s whatever
else the server did. Here each caller hands its item of work in and waits; one committer at
a time hands every item handed in meanwhile (up to MAX_GROUP), in order, to the owner's
`together` function, in one transaction, and commits once -- so `together` may also write
the group's items with one statement each, not one per item. A lone caller's item is
applied at once, alone: a group forms only while a commit is in progress or when callers
arrive together.

The items must be independent of each other's outcome (each could run in its own
transaction): a group's later items see what its earlier ones wrote, as a later transaction
would. If `together` raises a DomainError (a caller's own error: a conflict, a refusal), the
group is rolled back and each item is applied again alone, so the error reaches only its own
caller -- what one transaction each would have done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from jobtask.domain.errors import DomainError, shutting_down
from jobtask.store.database import Database
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["GroupedTransactions"]

ItemT = TypeVar("ItemT")
T = TypeVar("T")
# Items per transaction: bounds how long one commit holds its locks.
MAX_GROUP = 64


class GroupedTransactions(Generic[ItemT, T]):
    def __init__(
        self,
        db: Database,
        together: Callable[[AsyncConnection, list[ItemT]], Awaitable[list[T]]],
    ) -> None:
        """`together(conn, items)` applies items in order and answers each one's result."""
        self.db = db
        self._together = together
        self._waiting: list[tuple[ItemT, asyncio.Future[T]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def run(self, item: ItemT) -> T:
        """The item's result once its transaction (shared or not) committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._committer is None:
            # A task of its own: the group commits even if the caller that started it leaves.
            committer = self._committer = asyncio.create_task(self._commit())
            committer.add_done_callback(self._ended)
        return await future

    async def _commit(self) -> None:
        try:
            while self._waiting:
                group = self._waiting[:MAX_GROUP]
                del self._waiting[:MAX_GROUP]
                await self._apply(group)
        finally:
            self._stopped()

    def _ended(self, committer: asyncio.Task[None]) -> None:
        if self._committer is committer:
            # Canceled before it first ran (as the server stops): _commit never did.
            self._stopped()

    def _stopped(self) -> None:
        """No committer now (the next item starts one); the items still waiting -- their
        committer was canceled, as the server stops -- told so."""
        self._committer = None
        leftover, self._waiting = self._waiting, []
        for _, future in leftover:
            if not future.done():
                future.set_exception(shutting_down())

    async def _apply(self, group: list[tuple[ItemT, asyncio.Future[T]]]) -> None:
        items = [item for item, _ in group]

        async def together(conn: AsyncConnection) -> list[T]:
            return await self._together(conn, items)

        if len(group) == 1:
            await _settle(group[0][1], self.db.transact(together))
            return
        try:
            results = await self.db.transact(together)
        except DomainError:
            for item in group:
                await self._apply([item])
            return
        except asyncio.CancelledError:
            # The committer is canceled only as the server stops: its callers hear so.
            for _, future in group:
                if not future.done():
                    future.set_exception(shutting_down())
            raise
        except Exception as exc:  # the store failed (or a bug): every caller hears it
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)


async def _settle(future: asyncio.Future[Any], work: Awaitable[list[Any]]) -> None:
    try:
        (result,) = await work
    except asyncio.CancelledError:
        if not future.done():
            future.set_exception(shutting_down())
        raise
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
        return
    if not future.done():
        future.set_result(result)
