"""Load generators: closed-loop unary calls, and a raw HTTP/1.1 keep-alive GET loop.

    python -m bench.load http HOST PORT PATH TOKEN CONCURRENCY SECONDS   # prints {"rate": r}

The HTTP generator speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) that the
gateway, not the client library, sets the pace; it runs in its own process.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.harness import announce


async def closed_loop(
    call: Callable[[], Awaitable[Any]], *, concurrency: int, seconds: float, warmup: float = 0.5
) -> float:
    """Calls/s of `concurrency` callers each calling back to back for `seconds`."""
    stop_at = 0.0
    counting = False
    done = 0

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await call()
            if counting:
                done += 1

    stop_at = time.perf_counter() + warmup + seconds
    workers = [asyncio.create_task(caller()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    counting, start = True, time.perf_counter()
    await asyncio.sleep(seconds)
    counting = False
    elapsed = time.perf_counter() - start
    counted = done
    await asyncio.gather(*workers)
    return counted / elapsed


async def _http_get_loop(
    host: str, port: int, path: str, token: str, concurrency: int, seconds: float
) -> float:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
    ).encode()

    async def connection() -> Callable[[], Awaitable[None]]:
        reader, writer = await asyncio.open_connection(host, port)

        async def get() -> None:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                raise RuntimeError(f"GET {path}: HTTP {status}")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)

        return get

    gets = [await connection() for _ in range(concurrency)]
    it = iter(range(10**12))

    # Each caller owns one connection: closed_loop's callers pick theirs by index.
    callers: dict[asyncio.Task[Any] | None, Any] = {}

    async def call() -> None:
        task = asyncio.current_task()
        get = callers.get(task)
        if get is None:
            get = callers[task] = gets[next(it) % len(gets)]
        await get()

    return await closed_loop(call, concurrency=concurrency, seconds=seconds)


def main() -> None:
    kind, *args = sys.argv[1:]
    if kind != "http":
        raise SystemExit(f"unknown load {kind!r}")
    host, port, path, token, concurrency, seconds = args
    rate = asyncio.run(
        _http_get_loop(host, int(port), path, token, int(concurrency), float(seconds))
    )
    announce(rate=rate)


if __name__ == "__main__":
    main()
