"""Group commit: the batches of a process's RunTask streams, applied several at a time.

A stream acknowledges a batch only once it is durable, so each batch is a transaction. With
one transaction per stream's batch, a hundred streams finishing their tasks at once queue on
the store's write lock (SQLite) or on their job's row (PostgreSQL), one commit each, and each
holds the lock for a dozen statements. Instead a stream hands its batch here and waits: one
committer at a time applies every batch handed in meanwhile (up to MAX_GROUP) in one
transaction (ReportManager.apply_many), each job locked and settled once. A lone stream's
batch is applied at once, as before: a group forms only while a commit is in progress.

Heartbeats (nothing but liveness) are one UPDATE without locks and do not wait here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from jobtask.domain.errors import Aborted, DomainError, Unavailable, shutting_down
from jobtask.manager.reports import Outcome, ReportManager, Submission
from jobtask.store.grouped import GroupDrainer

log = logging.getLogger(__name__)

# Batches per transaction: bounds how long one commit holds the locks (and the loop, on
# SQLite, whose statements run inline) while others wait.
MAX_GROUP = 128


class _Waiter:
    """The outcomes (or errors) of one caller's batches, handed to it at once when the
    last is decided: one future per caller, not one per batch (a worker session's message
    holds dozens, and a future each, gathered, cost more than the rest of their way back)."""

    __slots__ = ("future", "left", "results")

    def __init__(self, future: asyncio.Future[list[Outcome | BaseException]], count: int) -> None:
        self.future = future
        self.results: list[Outcome | BaseException] = [_UNSET] * count
        self.left = count

    def set(self, index: int, value: Outcome | BaseException) -> None:
        self.results[index] = value
        self.left -= 1
        if not self.left and not self.future.done():
            self.future.set_result(self.results)


# A batch's place in its caller's _Waiter.
Waiting = tuple[Submission, _Waiter, int]
_UNSET: Any = object()


class GroupCommit(GroupDrainer[Waiting]):
    def __init__(
        self,
        reports: ReportManager,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> None:
        # `spawn` runs the committer to its end even if the stream that started it is
        # canceled.
        super().__init__(MAX_GROUP, spawn)
        self.reports = reports

    @property
    def committing(self) -> bool:
        """A group is being applied (or waits to be)."""
        return self.running is not None

    async def apply(self, item: Submission) -> Outcome:
        """Applies one stream's batch (in a group, if others are waiting) once durable."""
        if item.batch.is_heartbeat:
            return await self.reports.heartbeat(
                item.task_uuid, item.lease_id, worker_alive=item.worker_alive
            )
        waiter = _Waiter(asyncio.get_running_loop().create_future(), 1)
        self._waiting.append((item, waiter, 0))
        if self._drainer is None:
            self._start()
        # A stream canceled while it waits leaves its batch in the group: the worker sent
        # it, and the stream's cleanup then finds the lease in whatever state it left.
        (result,) = await waiter.future
        if isinstance(result, BaseException):
            raise result
        return result

    async def apply_all(self, items: list[Submission]) -> list[Outcome | BaseException]:
        """Applies several batches (a worker session's message: one per task) in the next
        group, once durable; their outcomes in order (or each one's error)."""
        waiter = _Waiter(asyncio.get_running_loop().create_future(), len(items))
        beats: list[tuple[int, asyncio.Future[Outcome]]] = []
        for i, item in enumerate(items):
            if item.batch.is_heartbeat:
                beat = self.reports.heartbeat(
                    item.task_uuid, item.lease_id, worker_alive=item.worker_alive
                )
                beats.append((i, asyncio.ensure_future(beat)))
                continue
            self._waiting.append((item, waiter, i))
        if self._waiting and self._drainer is None:
            self._start()
        if beats:
            done = await asyncio.gather(*(f for _, f in beats), return_exceptions=True)
            for (i, _), result in zip(beats, done, strict=True):
                waiter.set(i, result)
        return await waiter.future

    def _tell(self, waiting: Waiting, error: Exception) -> None:
        _, waiter, i = waiting
        waiter.set(i, error)

    async def _apply(self, group: list[Waiting]) -> None:
        try:
            outcomes = await self.reports.apply_many([item for item, _, _ in group])
        except (Unavailable, Aborted) as exc:
            # The store failed, not an item: every stream hears it (and keeps its lease).
            for _, waiter, i in group:
                waiter.set(i, exc)
            return
        except DomainError as exc:
            if len(group) == 1:
                _, waiter, i = group[0]
                waiter.set(i, exc)
                return
            # One item was refused (a caller that may not write its task): apply each
            # alone, so the refusal reaches only its own stream.
            log.debug("group of %d refused (%s): applying each alone", len(group), exc.message)
            for waiting in group:
                await self._apply([waiting])
            return
        except asyncio.CancelledError:
            # The committer is canceled only as the server stops: its streams hear so.
            for _, waiter, i in group:
                waiter.set(i, shutting_down())
            raise
        except Exception as exc:  # a bug: each stream fails with it, as it would alone
            for _, waiter, i in group:
                waiter.set(i, exc)
            return
        for (_, waiter, i), outcome in zip(group, outcomes, strict=True):
            waiter.set(i, outcome)
