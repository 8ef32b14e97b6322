"""A server process's background loops: the lease reaper, hearing other processes'
commits (feed polling on SQLite, LISTEN on PostgreSQL), pruning the change feed and (with
the reaper, in TaskService processes) the worker registry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from jobtask.manager.claims import ClaimManager
from jobtask.manager.context import Settings, utcnow
from jobtask.manager.workers import prune_workers
from jobtask.server.changes import ChangeSignal
from jobtask.server.listen import listen_forever
from jobtask.store import feed
from jobtask.store.database import Database
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)

PRUNE_SECONDS = 60.0


async def _counting_forever(
    work: Callable[[], Awaitable[int]], interval: float, done: str, failed: str
) -> None:
    """Runs `work` every `interval` seconds, through database hiccups: logs `done` with how
    many things it did (when any), `failed` with the exception when it raised."""
    while True:
        try:
            count = await work()
            if count:
                log.info(done, count)
        except Exception:
            log.exception(failed)
        await asyncio.sleep(interval)


async def reap_forever(claims: ClaimManager) -> None:
    """Finds expired leases within one heartbeat interval (ttl / 3) of their expiry, so
    within two of the missed heartbeat that let them expire."""
    interval = max(claims.settings.heartbeat_interval.total_seconds(), 0.05)
    await _counting_forever(
        claims.reap_expired, interval, "reaped %d expired lease(s)", "reaper failed"
    )


async def poll_feed_forever(db: Database, signal: ChangeSignal) -> None:
    """A store that does not notify (SQLite): other processes' commits are invisible to
    this one's signal. One query per interval for the whole process finds them; waiters
    wake only when the feed grew."""
    last = -1
    while True:
        try:
            async with db.read() as conn:
                current = await feed.head(conn)
            if current != last:
                last = current
                signal.notify()
        except Exception:
            log.exception("polling the change feed failed")
        await asyncio.sleep(signal.poll_interval)


async def prune_forever(db: Database, settings: Settings, interval: float = PRUNE_SECONDS) -> None:
    """Keeps the change feed bounded (Settings.feed_keep, feed_keep_events)."""

    async def run(conn: AsyncConnection) -> int:
        return await feed.prune(
            conn, keep_events=settings.feed_keep_events, older_than=utcnow() - settings.feed_keep
        )

    await _counting_forever(
        lambda: db.transact(run),
        interval,
        "pruned %d change feed event(s)",
        "pruning the change feed failed",
    )


async def prune_workers_forever(
    db: Database, settings: Settings, interval: float = PRUNE_SECONDS
) -> None:
    """Keeps the worker registry to the workers seen within Settings.worker_retention (and
    the live ones): every restart of a worker registers a new id."""
    await _counting_forever(
        lambda: prune_workers(db, settings, utcnow()),
        interval,
        f"pruned %d worker(s) stopped or lost and not seen for {settings.worker_retention}",
        "pruning the worker registry failed",
    )


def start(
    db: Database,
    settings: Settings,
    signal: ChangeSignal,
    claims: ClaimManager,
    *,
    reaper: bool,
    prune_interval: float = PRUNE_SECONDS,
) -> list[asyncio.Task[None]]:
    """Starts the loops a process needs; the caller cancels them at shutdown."""
    loops = [
        asyncio.create_task(
            listen_forever(db.url, signal, own=db.own_notification)
            if db.notifies
            else poll_feed_forever(db, signal)
        ),
        asyncio.create_task(prune_forever(db, settings, prune_interval)),
    ]
    if reaper:
        loops.append(asyncio.create_task(reap_forever(claims)))
        loops.append(asyncio.create_task(prune_workers_forever(db, settings, prune_interval)))
    return loops
