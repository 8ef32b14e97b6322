"""Wakes watch streams when the change feed may have grown.

In-process commits signal at once; other processes' commits are found by polling the feed
(SQLite) -- the PostgreSQL LISTEN/NOTIFY path plugs in through `notify` as well.
"""

from __future__ import annotations

import asyncio
import contextlib


class ChangeSignal:
    def __init__(self, poll_interval: float = 0.25) -> None:
        self.poll_interval = poll_interval
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, at_most: float | None = None) -> None:
        """Returns when notified, or after the poll interval (or `at_most`, if shorter)."""
        limit = self.poll_interval if at_most is None else min(at_most, self.poll_interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), limit)
