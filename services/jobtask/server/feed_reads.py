"""One change-feed read for all of a process's watch streams, whatever job they watch.

Every commit wakes every watch stream of the process -- on PostgreSQL every NOTIFY of any
job, on SQLite every poll that found the feed grew. Each stream used to read the feed on its
own, then the streams of one job shared a read: still one read per watched job per commit,
and a watcher of a quiet job paid a read (and a second one, of the pruning watermark) for
every commit of every other job. Here every stream asking for the events after its
position joins the next read to *start* after it asked (never one already running, which
could miss a commit made since); that read is one statement for all the jobs of its batch
(store.feed.read_jobs_after), and every stream gets its job's rows after its own position
from it. A read runs while streams wait for it; those that ask meanwhile form the next
batch, read by one of them.

The rows (and their WatchEvent messages, built once) are shared by the streams: nobody may
change them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from jobtask.store import feed
from jobtask.store.database import Database

Row = dict[str, Any]
# The pruning watermark is read again after this many seconds at most. It only rises, and a
# stream uses it only to move a quiet job's position up to it (watch.py): an older value
# moves it less far, never past an event. Pruning runs once a minute (upkeep).
PRUNED_REFRESH_SECONDS = 1.0


@dataclass(frozen=True)
class FeedPage:
    """The events after a stream's position, and what the shared read saw."""

    rows: list[Row]
    # The read returned a full page: more events may follow; read again at once.
    more: bool
    # The pruning watermark, given only when the shared read found no event of the job.
    pruned: int


Result = tuple[list[Row], bool, int]
# Told to a waiting stream whose reader left: read for the waiting streams now.
_LEAD: Any = object()
# A waiting stream: its position, page size and where its result goes.
_Waiter = tuple[int, int, "asyncio.Future[Result]"]


class SharedFeedReads:
    """The reads run in the streams' own tasks (one stream reads for the others), so a
    stream cancelled mid-read -- its client left, the server stops -- ends its read and
    releases the connection like any other; a waiting stream takes over."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Per job, the streams waiting for the next read.
        self._waiting: dict[str, list[_Waiter]] = {}
        self._leading = False
        self._pruned = 0
        self._pruned_at = -PRUNED_REFRESH_SECONDS

    async def after(self, job_uuid: str, after_seq: int, limit: int) -> FeedPage:
        """The job's events after `after_seq` (at most `limit`), committed before this call
        at least."""
        loop = asyncio.get_running_loop()
        while True:
            future: asyncio.Future[Result] = loop.create_future()
            self._waiting.setdefault(job_uuid, []).append((after_seq, limit, future))
            if not self._leading:
                await self._read_for_all(future)
            result = await future
            if result is not _LEAD:
                break
        rows, more, pruned = result
        return FeedPage([r for r in rows if r["seq"] > after_seq], more, pruned)

    async def _read_for_all(self, own: asyncio.Future[Result]) -> None:
        """One read for every stream waiting now, this one's included; the streams that
        ask meanwhile wait for the next read, by one of them."""
        self._leading = True
        batch: dict[str, list[_Waiter]] = {}
        try:
            # One turn of the loop first: the other streams one commit woke ask now, and
            # share this read instead of starting the next.
            await asyncio.sleep(0)
            # Streams cancelled while they waited left their futures behind: not asked for.
            batch = {
                job: live
                for job, waiters in self._waiting.items()
                if (live := [w for w in waiters if not w[2].done()])
            }
            self._waiting = {}
            asks = {
                job: (min(w[0] for w in waiters), min(w[1] for w in waiters))
                for job, waiters in batch.items()
            }
            async with self.db.read() as conn:
                found = await feed.read_jobs_after(conn, asks)
                empty = not all(found.values())
                pruned = await self._watermark(conn) if empty else 0
            for job, waiters in batch.items():
                rows = found[job]
                result = (rows, len(rows) == asks[job][1], 0 if rows else pruned)
                for _, _, future in waiters:
                    if not future.done():
                        future.set_result(result)
        except Exception as exc:
            for waiters in batch.values():
                for _, _, future in waiters:
                    if not future.done():
                        future.set_exception(exc)
        finally:
            # Cancelled (this stream is closing): the others of the batch wait on.
            own.cancel()
            for job, waiters in batch.items():
                left = [w for w in waiters if not w[2].done()]
                if left:
                    self._waiting[job] = left + self._waiting.get(job, [])
            self._leading = False
            self._hand_over()

    async def _watermark(self, conn: Any) -> int:
        now = time.monotonic()
        if now - self._pruned_at >= PRUNED_REFRESH_SECONDS:
            self._pruned = await feed.pruned_before(conn)
            self._pruned_at = now
        return self._pruned

    def _hand_over(self) -> None:
        """Wakes one waiting stream to read next; forgets the jobs no stream waits on."""
        for job in list(self._waiting):
            waiters = self._waiting[job]
            while waiters:
                _, _, future = waiters.pop(0)
                if not future.done():
                    future.set_result(_LEAD)
                    if not waiters:
                        del self._waiting[job]
                    return
            del self._waiting[job]
