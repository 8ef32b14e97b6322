"""Watch streams that survive reconnects: resumed with `after_seq`, nothing missed or repeated.

The servers number every event with the change feed's sequence. We remember the last
number seen (a finished snapshot counts as its `seq`) and, when the stream breaks because
a server went away, open it again with `after_seq` = that number. A break in the middle of
the snapshot starts the snapshot over: the caller sees a SNAPSHOT page carrying `job`
again and should reset what it built from the earlier pages.

The SDK's streams ask for several events per message (`max_events_per_message`): a watcher
that lags behind the job gets them packed (WatchEvent.more), and `unpacked` hands them on
one by one, so callers see the same events as on a stream of one event per message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import grpc
from jobtask.sdk.errors import JobtaskError, UnavailableError, from_rpc_error
from jobtask.v1 import watch_pb2

# Opens one stream, resuming after the given sequence number (None: snapshot first).
OpenStream = Callable[[int | None], AsyncIterator[watch_pb2.WatchEvent]]
# Told when the stream breaks and a reconnect begins (with why), and again when it is back
# (with None): so a command line can say so instead of going quiet.
OnBreak = Callable[[JobtaskError | None], None]

# Codes that mean "the server went away", not "the request was wrong".
RECONNECT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})
SNAPSHOT = watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT
HEARTBEAT = watch_pb2.WATCH_EVENT_TYPE_HEARTBEAT
# What the SDK asks for; the server packs at most this many anyway.
EVENTS_PER_MESSAGE = 256


def unpacked(message: watch_pb2.WatchEvent) -> list[watch_pb2.WatchEvent]:
    """A stream message's events in order: its own, then those packed in `more`, which is
    cleared (every event handed on has an empty `more`)."""
    if not message.more:
        return [message]
    rest = list(message.more)
    message.ClearField("more")
    return [message, *rest]


async def resumable(
    open_stream: OpenStream,
    *,
    after_seq: int | None = None,
    reconnect_for: float = 30.0,
    heartbeats: bool = False,
    on_break: OnBreak | None = None,
) -> AsyncGenerator[watch_pb2.WatchEvent, None]:
    """Yields the events of successive streams as one; ends when a stream ends by itself
    (the job is terminal). Gives up with UnavailableError after `reconnect_for` seconds
    without reaching a server; `on_break` hears of each break and each recovery."""
    last = after_seq
    delay = 0.1
    broken_since: float | None = None
    while True:
        stream = open_stream(last)
        try:
            async for message in stream:
                if broken_since is not None and on_break is not None:
                    on_break(None)
                broken_since = None
                delay = 0.1
                for event in unpacked(message):
                    if event.type == SNAPSHOT:
                        if event.snapshot_done:
                            last = event.seq
                    else:
                        last = event.seq
                    if heartbeats or event.type != HEARTBEAT:
                        yield event
            return
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RECONNECT_CODES:
                raise from_rpc_error(exc) from None
            now = time.monotonic()
            if broken_since is None and on_break is not None:
                on_break(from_rpc_error(exc))
            broken_since = broken_since or now
            if now - broken_since >= reconnect_for:
                error = from_rpc_error(exc)
                raise UnavailableError(
                    f"watch stream lost and not resumed within {reconnect_for:g}s: {error}",
                    status=error.status,
                ) from None
        finally:
            # Closed early (the caller stopped reading, or its client closes): the call ends
            # now, on this loop, not when it is collected, maybe after the loop has closed.
            cancel = getattr(stream, "cancel", None)
            if cancel is not None:
                cancel()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
