"""Several no-op worker processes (bench.noop_worker --coordinated) draining one jobtask.

Each worker starts on the same signal; the fleet adds up their decision counts and closes
their standard input once the total is reached. Figures use wall clock times
(time.time()), which all processes on this machine share: the time from the start signal
to the last decision of any worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.harness import Child

WITHIN = 1800.0


@dataclass
class Fleet:
    procs: list[Child]
    started: float = 0.0
    counts: list[int] = field(default_factory=list)
    lasts: list[float] = field(default_factory=list)
    finals: list[dict[str, Any]] = field(default_factory=list)
    target: int = 0
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return sum(self.counts)

    async def _read(self, i: int) -> None:
        while True:
            line = await self.procs[i].line(WITHIN)
            if line.get("done"):
                self.finals[i] = line
                return
            self.counts[i] = line["completed"] + line.get("other", 0) + line.get("lost", 0)
            self.lasts[i] = line["last"]
            if self.target and self.completed >= self.target:
                self.reached.set()

    def go(self) -> None:
        self.counts = [0] * len(self.procs)
        self.lasts = [0.0] * len(self.procs)
        self.finals = [{} for _ in self.procs]
        self.started = time.time()
        for proc in self.procs:
            assert proc.proc.stdin is not None
            proc.proc.stdin.write("go\n")
            proc.proc.stdin.flush()
        self.readers = [asyncio.create_task(self._read(i)) for i in range(len(self.procs))]

    async def until(self, total: int) -> float:
        """Waits until the workers decided `total` tasks; returns the seconds from the start
        signal to the last of those decisions."""
        self.target = total
        if self.completed >= total:
            self.reached.set()
        waiting = asyncio.create_task(self.reached.wait())
        await asyncio.wait({waiting, *self.readers}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            for reader in self.readers:
                if reader.done():
                    reader.result()  # a worker died: its error
            raise RuntimeError("a worker stopped before the total was reached")
        return max(self.lasts) - self.started

    async def finish(self) -> list[dict[str, Any]]:
        """Stops the workers; their last lines (probes, creation time)."""
        for proc in self.procs:
            with contextlib.suppress(OSError):
                assert proc.proc.stdin is not None
                proc.proc.stdin.close()
        await asyncio.gather(*self.readers)
        return self.finals

    @property
    def create_seconds(self) -> float:
        created = [f["created"] for f in self.finals if f.get("created")]
        return max(created) - self.started if created else 0.0

    @property
    def lost(self) -> int:
        """Tasks whose lease a worker gave up on (bench.noop_worker.LostLeases)."""
        return sum(f.get("lost", 0) for f in self.finals)

    @property
    def probes(self) -> list[tuple[float, float]]:
        """Per probe task: (runnable -> function started, runnable -> claimed), seconds."""
        return [(p[0], p[1]) for f in self.finals for p in f.get("probes", [])]


@contextlib.asynccontextmanager
async def fleet(
    stack: Any,
    workers: int,
    slots: int,
    *,
    creator: int = 0,
    extra: Sequence[str] = (),
    replicas: Sequence[Any] = (),
) -> AsyncIterator[Fleet]:
    """`workers` no-op worker processes on `stack`, ready; call go() to start them. With
    `replicas` (stacks of servers on the same database), worker i is on replicas[i % n]."""
    procs: list[Child] = []
    try:
        for i in range(workers):
            on = replicas[i % len(replicas)] if replicas else stack
            args = [on.jobs_addr, on.tasks_addr, on.token, "0", str(slots)]
            args += ["--coordinated", "--id", str(i), *extra]
            if creator:
                args += ["--creator", str(creator)]
            procs.append(Child("bench.noop_worker", *args))
        for proc in procs:
            await proc.line(WITHIN)
        yield Fleet(procs)
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))
