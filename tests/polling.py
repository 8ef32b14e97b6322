"""The one way tests wait for something to become true: poll it, with a deadline generous
enough for a loaded two-core CI machine. A deadline here is a bound on a hang, never a claim
about speed (performance is measured in bench/, not asserted in tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["DEADLINE", "eventually"]

# Long enough that a slow machine never trips it; short enough that a real hang fails the
# test well inside pytest's own timeout.
DEADLINE = 30.0


async def eventually(
    check: Callable[[], Any], *, within: float = DEADLINE, interval: float = 0.05
) -> Any:
    """Polls `check` (sync or async) until it returns a truthy value, which is returned."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s: {check}")
        await asyncio.sleep(interval)
