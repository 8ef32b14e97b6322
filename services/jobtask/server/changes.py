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


class ChangeSignal:
    def __init__(self, poll_interval: float = 0.25, max_wait: float = 1.0) -> None:
        # How often a SQLite process polls the feed for other processes' commits.
        self.poll_interval = poll_interval
        self.max_wait = max_wait
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def mark(self) -> asyncio.Event:
        """The event the next notification sets."""
        return self._event

    async def wait(
        self, at_most: float | None = None, *, since: asyncio.Event | None = None
    ) -> bool:
        """Returns True when notified (since `since` was marked, if given), False after
        `at_most` or max_wait, whichever is shorter."""
        event = since if since is not None else self._event
        if event.is_set():
            return True
        limit = self.max_wait if at_most is None else min(at_most, self.max_wait)
        try:
            await asyncio.wait_for(event.wait(), max(limit, 0.0))
        except TimeoutError:
            return False
        return True
