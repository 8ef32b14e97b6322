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

`Drainer` is the part every such group shares (GroupedTransactions here, the report groups'
jobtask.server.group_commit.GroupCommit, the token reads' jobtask.manager.tokens): one task
at a time serving what its callers left waiting, and what they hear when that task ends
before serving them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from jobtask.domain.errors import DomainError, shutting_down
from jobtask.store.database import Database
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["Drainer", "GroupDrainer", "GroupedTransactions"]

ItemT = TypeVar("ItemT")
W = TypeVar("W")  # a waiting item, as a GroupDrainer keeps it
T = TypeVar("T")
# Items per transaction: bounds how long one commit holds its locks.
MAX_GROUP = 64


class Drainer:
    """One task at a time (the drainer) serving what callers left waiting: a caller leaves
    its item where the subclass keeps them, then calls `_start()` unless `running`. The
    drainer runs `_drain()`, which serves items until none waits. However it ends -- done,
    failed, or canceled (as the server stops), even before its first step -- `_abandon`
    runs once after it: there is no drainer then (the next caller starts one), and whatever
    still waits hears `shutting_down()`, never a canceled future (which would end its call
    CANCELLED, as if its client had given up) nor silence (which would hang it)."""

    def __init__(
        self, spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]] | None = None
    ) -> None:
        """`spawn` makes the drainer's task (asyncio.create_task unless given: a caller
        that leaves must not take the drainer with it)."""
        self._spawn = spawn or asyncio.create_task
        self._drainer: asyncio.Task[None] | None = None

    @property
    def running(self) -> asyncio.Task[None] | None:
        """The drainer serving (or about to serve) the items waiting, if any."""
        return self._drainer

    def _start(self) -> None:
        work = self._run()
        drainer = self._drainer = self._spawn(work)
        drainer.add_done_callback(lambda task: self._ended(task, work))

    async def _run(self) -> None:
        try:
            await self._drain()
        finally:
            self._stopped()

    def _ended(self, drainer: asyncio.Task[None], work: Coroutine[Any, Any, None]) -> None:
        if self._drainer is drainer:
            # Canceled before its first step: _run never ran, so its `finally` did not (its
            # coroutine, never awaited, is closed: nothing to warn of).
            work.close()
            self._stopped()

    def _stopped(self) -> None:
        self._drainer = None
        self._abandon(shutting_down())

    async def _drain(self) -> None:
        """Serves the waiting items until none is left."""
        raise NotImplementedError

    def _abandon(self, error: Exception) -> None:
        """No drainer now: every item still waiting hears `error`, and what the subclass
        keeps of a drain in progress is reset."""
        raise NotImplementedError


class GroupDrainer(Drainer, Generic[W]):
    """A Drainer whose waiting items are a list, in arrival order, served `group_size` at a
    time by `_apply`."""

    def __init__(
        self,
        group_size: int,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]] | None = None,
    ) -> None:
        super().__init__(spawn)
        self._group_size = group_size
        self._waiting: list[W] = []

    async def _drain(self) -> None:
        while self._waiting:
            group = self._waiting[: self._group_size]
            del self._waiting[: self._group_size]
            await self._apply(group)

    def _abandon(self, error: Exception) -> None:
        leftover, self._waiting = self._waiting, []
        for waiting in leftover:
            self._tell(waiting, error)

    async def _apply(self, group: list[W]) -> None:
        """Serves a group: every one of its items hears its result or its error."""
        raise NotImplementedError

    def _tell(self, waiting: W, error: Exception) -> None:
        """A waiting item hears `error` (unless it heard something already)."""
        raise NotImplementedError


class GroupedTransactions(GroupDrainer[tuple[ItemT, asyncio.Future[T]]], Generic[ItemT, T]):
    def __init__(
        self,
        db: Database,
        together: Callable[[AsyncConnection, list[ItemT]], Awaitable[list[T]]],
    ) -> None:
        """`together(conn, items)` applies items in order and answers each one's result."""
        super().__init__(MAX_GROUP)
        self.db = db
        self._together = together

    async def run(self, item: ItemT) -> T:
        """The item's result once its transaction (shared or not) committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._drainer is None:
            self._start()
        return await future

    def _tell(self, waiting: tuple[ItemT, asyncio.Future[T]], error: Exception) -> None:
        _, future = waiting
        if not future.done():
            future.set_exception(error)

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
