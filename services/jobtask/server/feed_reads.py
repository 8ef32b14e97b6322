"""One change-feed read per job for all of a process's watch streams of that job.

Every commit wakes every watch stream; each used to read the feed on its own, so 100
watchers of one job read the same rows 100 times per commit. Here the streams of one job
share reads: a stream asking for the events after its position joins the next read of
that job to *start* after it asked (never one already running, which could miss a commit
made since), and every stream of the batch gets the rows after its own position from it.
A read runs while streams wait for it; those that ask meanwhile form the next batch, read
by one of them.

The rows (and their WatchEvent messages, built once) are shared by the streams: nobody may
change them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from jobtask.store import feed
from jobtask.store.database import Database

Row = dict[str, Any]


@dataclass(frozen=True)
class FeedPage:
    """The events after a stream's position, and what the shared read saw."""

    rows: list[Row]
    # The read returned a full page: more events may follow; read again at once.
    more: bool
    # The pruning watermark, read only when the shared read found no event.
    pruned: int


Result = tuple[list[Row], bool, int]
# Told to a waiting stream whose reader left: read for the waiting streams now.
_LEAD: Any = object()


@dataclass
class _JobReads:
    waiters: list[tuple[int, asyncio.Future[Result]]] = field(default_factory=list)
    leading: bool = False


class SharedFeedReads:
    """The reads run in the streams' own tasks (one stream reads for the others), so a
    stream cancelled mid-read -- its client left, the server stops -- ends its read and
    releases the connection like any other; a waiting stream takes over."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._jobs: dict[str, _JobReads] = {}

    async def after(self, job_uuid: str, after_seq: int, limit: int) -> FeedPage:
        """The job's events after `after_seq` (at most `limit`), committed before this call
        at least."""
        loop = asyncio.get_running_loop()
        while True:
            reads = self._jobs.get(job_uuid)
            if reads is None:
                reads = self._jobs[job_uuid] = _JobReads()
            future: asyncio.Future[Result] = loop.create_future()
            reads.waiters.append((after_seq, future))
            if not reads.leading:
                await self._read_for_all(job_uuid, reads, limit, future)
            result = await future
            if result is not _LEAD:
                break
        rows, more, pruned = result
        return FeedPage([r for r in rows if r["seq"] > after_seq], more, pruned)

    async def _read_for_all(
        self, job_uuid: str, reads: _JobReads, limit: int, own: asyncio.Future[Result]
    ) -> None:
        """One read for every stream waiting now, this one's included; the streams that
        ask meanwhile wait for the next read, by one of them."""
        reads.leading = True
        batch, reads.waiters = reads.waiters, []
        try:
            lowest = min(after for after, _ in batch)
            async with self.db.read() as conn:
                rows = await feed.read_after(conn, job_uuid, lowest, limit=limit)
                pruned = await feed.pruned_before(conn) if not rows else 0
            result = (rows, len(rows) == limit, pruned)
            for _, future in batch:
                if not future.done():
                    future.set_result(result)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            # Cancelled (this stream is closing): the others of the batch wait on.
            own.cancel()
            left = [w for w in batch if not w[1].done()] + reads.waiters
            reads.waiters = left
            reads.leading = False
            self._hand_over(job_uuid, reads)

    def _hand_over(self, job_uuid: str, reads: _JobReads) -> None:
        """Wakes one waiting stream to read next; forgets the job if none waits."""
        while reads.waiters:
            _, future = reads.waiters.pop(0)
            if not future.done():
                future.set_result(_LEAD)
                return
        if self._jobs.get(job_uuid) is reads:
            del self._jobs[job_uuid]
