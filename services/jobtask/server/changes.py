"""Wakes watch streams, waiting claimers and worker streams when the store changed.

Three sources call `notify`: this process's own commits that changed something
(Database.on_commit), and other processes' commits -- found by polling the feed's head on
SQLite (upkeep.poll_feed_forever), or by LISTEN on PostgreSQL (jobtask.server.listen).

A waiter takes a `mark()` before it reads the store and waits on that mark afterwards, so a
notification that arrives between its read and its wait is not lost. Waits are bounded by
`max_wait` all the same, as a safety net for a notification lost with a connection.
"""

from __future__ import annotations

import asyncio


class Mark:
    """One notification to come: set once, by the `notify` that follows its `mark()`.

    Not an asyncio.Event: waiting on an Event with a timeout (asyncio.wait_for) costs a
    task per wait, and every commit ends the waits of every watch and worker stream of the
    process -- 100 streams on one job made that a large share of the server's CPU. A Mark's
    waiters are bare futures with a timer."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: set[asyncio.Future[bool]] = set()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(True)
        self._waiters.clear()

    async def wait(self, at_most: float) -> bool:
        """True once set, False after `at_most` seconds."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.add(waiter)
        timer = loop.call_later(at_most, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class ChangeSignal:
    def __init__(self, poll_interval: float = 0.25, max_wait: float = 1.0) -> None:
        # How often a SQLite process polls the feed for other processes' commits.
        self.poll_interval = poll_interval
        self.max_wait = max_wait
        self._mark = Mark()
        self._claim_mark = Mark()
        # How many times it was notified (what tests count).
        self.notifications = 0

    def notify(self, claims: bool = True) -> None:
        """A change: every waiter's mark is set, a claimer's only if the change may have
        made a task claimable (`claims`; see jobtask.store.database.claims_unchanged)."""
        self.notifications += 1
        self._mark.set()
        self._mark = Mark()
        if claims:
            self._claim_mark.set()
            self._claim_mark = Mark()

    def mark(self) -> Mark:
        """What the next notification sets."""
        return self._mark

    def claim_mark(self) -> Mark:
        """What the next notification that may have made a task claimable sets: what a
        claim that found nothing waits on."""
        return self._claim_mark

    async def wait(self, at_most: float | None = None, *, since: Mark | None = None) -> bool:
        """Returns True when notified (since `since` was marked, if given), False after
        `at_most` or max_wait, whichever is shorter."""
        mark = since if since is not None else self._mark
        limit = self.max_wait if at_most is None else min(at_most, self.max_wait)
        return await mark.wait(max(limit, 0.0))
