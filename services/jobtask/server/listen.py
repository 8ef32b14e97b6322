"""Other processes' commits, heard on PostgreSQL: one LISTEN connection per process.

Every write transaction that changed the feed sends `NOTIFY jobtask_events` as it commits
(jobtask.store.database); each notification wakes this process's ChangeSignal. When the
connection drops, notifications sent meanwhile are lost, so after each (re)connection the
signal is raised once and the waiters re-read the store themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
from jobtask.server.changes import ChangeSignal
from jobtask.store.database import NOTIFY_CHANNEL
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

# How often the connection is checked (a dead TCP peer raises no event by itself).
PING_SECONDS = 5.0
RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_forever(
    url: str,
    signal: ChangeSignal,
    *,
    channel: str = NOTIFY_CHANNEL,
    own: Callable[[int], bool] = lambda _pid: False,
) -> None:
    """LISTENs on `channel` and notifies `signal`, reconnecting until canceled; skips the
    notifications `own` says this process's commits sent (their commits notified `signal`
    in this process: a second wake-up would have every waiter read again for nothing)."""
    failures = 0
    while True:
        try:
            conn = await asyncpg.connect(asyncpg_dsn(url))
        except (OSError, asyncpg.PostgresError) as exc:
            delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
            failures += 1
            log.warning("LISTEN connection failed (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            continue
        failures = 0
        try:
            await _listen(conn, signal, channel, own)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("LISTEN connection lost (%s); reconnecting", exc)
        finally:
            if not conn.is_closed():
                conn.terminate()


async def _listen(
    conn: Any, signal: ChangeSignal, channel: str, own: Callable[[int], bool]
) -> None:
    closed = asyncio.Event()

    def on_notify(_conn: Any, pid: int, *_args: Any) -> None:
        if not own(pid):
            signal.notify()

    conn.add_termination_listener(lambda _conn: closed.set())
    await conn.add_listener(channel, on_notify)
    # Whatever committed while we were not listening: let every waiter look.
    signal.notify()
    while not closed.is_set():
        try:
            await asyncio.wait_for(closed.wait(), PING_SECONDS)
        except TimeoutError:
            await conn.execute("SELECT 1")
