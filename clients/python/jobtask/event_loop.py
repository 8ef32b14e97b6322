"""The event loop jobtask's processes run: uvloop (libuv) when it is installed, else asyncio's
own. Every entry point runs its main coroutine with `run` (`jobtask up`/`serve`/`worker` and
the other commands, the benchmarks' server and worker).

$JOBTASK_EVENT_LOOP chooses: `auto` (the default: uvloop when importable), `uvloop` (an error
when it is not installed) or `asyncio` (the standard library's loop)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["CHOICES", "ENV", "loop_factory", "run", "running_loop"]

ENV = "JOBTASK_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")
T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop maker, or None for asyncio's default, as $JOBTASK_EVENT_LOOP says."""
    choice = (os.environ.get(ENV) or "auto").strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"${ENV} must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "asyncio" or sys.platform == "win32":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ValueError(f"${ENV}=uvloop, but uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on the loop `loop_factory` chooses."""
    try:
        factory = loop_factory()
    except BaseException:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def running_loop() -> str:
    """The running loop's name for a start-up log line: `uvloop 0.23.0` or `asyncio`."""
    module = type(asyncio.get_running_loop()).__module__
    if module.split(".")[0] == "uvloop":
        import uvloop

        return f"uvloop {getattr(uvloop, '__version__', '')}".strip()
    return "asyncio"
