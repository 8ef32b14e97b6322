"""What every benchmark shares: results and the table, child processes, tokens, timing.

A benchmark measures jobtask and its reference (a bare grpc.aio ceiling, or a peer job
queue) in the same run, on the same machine, with the same load generator, and reports
the ratio. The system under test always runs in its own process, the load in another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class Result:
    """One row of the table: jobtask's figure, its reference's, and the ratio."""

    bench: str
    metric: str
    unit: str
    value: float
    reference: str = ""
    reference_value: float | None = None
    # "higher" (throughput) or "lower" (latency, memory): how the ratio reads.
    better: str = "higher"
    target: str = ""
    met: bool | None = None
    note: str = ""
    runs: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.reference_value in (None, 0) or self.value == 0:
            return None
        assert self.reference_value is not None
        return self.value / self.reference_value


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.1f}"
    if unit == "MiB":
        return f"{value:.0f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def table(results: Sequence[Result]) -> str:
    """The results as a fixed-width text table (also valid Markdown)."""
    header = ["benchmark", "metric", "jobtask", "reference", "ref. value", "ratio", "target"]
    rows = [header, ["---"] * len(header)]
    for r in results:
        ratio = r.ratio
        verdict = "" if r.met is None else (" ok" if r.met else " MISS")
        rows.append(
            [
                r.bench,
                f"{r.metric} ({r.unit})",
                _fmt(r.value, r.unit),
                r.reference or "-",
                _fmt(r.reference_value, r.unit),
                "-" if ratio is None else f"{ratio:.2f}x",
                (r.target + verdict).strip() or "-",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        if row[0] == "---":
            row = ["-" * w for w in widths]
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def results_json(results: Sequence[Result]) -> str:
    return json.dumps([{**asdict(r), "ratio": r.ratio} for r in results], indent=2)


# -- child processes ---------------------------------------------------------------------


class Child:
    """A Python child process (`python -m bench.<module> ...`) that prints one JSON line
    when it is ready, then runs until its standard input closes (or it finishes)."""

    def __init__(self, module: str, *args: str, env: dict[str, str] | None = None) -> None:
        # The child's stderr goes to a file: its last lines are shown if it fails.
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 -- closed by stop()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", module, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env={**os.environ, **(env or {})},
            text=True,
        )
        self.module = module

    def stderr_tail(self, lines: int = 30) -> str:
        self.stderr.seek(0)
        return "".join(self.stderr.readlines()[-lines:])

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def line(self, within: float = 120.0) -> dict[str, Any]:
        """The child's next JSON line."""
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), within)
        except TimeoutError:
            raise RuntimeError(
                f"{self.module} did not answer in {within} s:\n{self.stderr_tail()}"
            ) from None
        if not raw:
            code = await asyncio.to_thread(self.proc.wait)
            raise RuntimeError(
                f"{self.module} exited ({code}) without answering:\n{self.stderr_tail()}"
            )
        data: dict[str, Any] = json.loads(raw)
        return data

    def rss_mib(self) -> float:
        """Resident memory now (Linux /proc)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far (Linux /proc)."""
        return proc_cpu_seconds(self.pid)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self.stderr.close()


@contextlib.asynccontextmanager
async def child(
    module: str, *args: str, within: float = 120.0, **kw: Any
) -> AsyncIterator[tuple[Child, dict[str, Any]]]:
    proc = Child(module, *args, **kw)
    try:
        ready = await proc.line(within)
        yield proc, ready
    finally:
        await asyncio.to_thread(proc.stop)


def proc_cpu_seconds(pid: int | str) -> float:
    """User + system CPU time a process used so far (Linux /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far, to the
    nanosecond: os.times() counts clock ticks (10 ms here), and a figure that takes a
    thread's time.thread_time() out of it (Meter: the sampler's) went below zero on a short
    run (bench.replicas, 200 tasks: "load generator -9" µs a task)."""
    return time.process_time()


class PostgresCpu:
    """The CPU seconds the PostgreSQL processes serving one database spend (its backends
    and autovacuum workers: their process titles name it), from /proc. A thread samples
    them every SAMPLE_SECONDS, so a backend that exits meanwhile (its client closed) still
    counts, up to its last sample; the thread's own CPU is `own` (to take out of this
    process's). PostgreSQL's shared processes (WAL writer, checkpointer) are not counted.
    Start with start(), read with stop()."""

    SAMPLE_SECONDS = 0.02

    def __init__(self, database: str) -> None:
        self.database = database
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.others: set[int] = set()
        self.own = 0.0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> dict[int, float]:
        seen = {}
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in self.others:
                continue
            pid = int(name)
            try:
                if pid not in self.last:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        title = f.read().replace(b"\0", b" ").decode(errors="replace")
                    if not title.startswith("postgres: "):
                        # A backend just forked still shows the postmaster's command line
                        # (".../bin/postgres -D ..."): looked at again next time.
                        if not title.split(" ")[0].endswith("/postgres"):
                            self.others.add(pid)
                        continue
                    if f" {self.database} " not in title:
                        continue  # perhaps not yet named: looked at again next time
                seen[pid] = proc_cpu_seconds(pid)
            except OSError:
                continue  # it exited meanwhile
        return seen

    def _run(self) -> None:
        while not self._stopped.wait(self.SAMPLE_SECONDS):
            self.last.update(self._sample())
        self.last.update(self._sample())
        self.own = time.thread_time()

    def start(self) -> None:
        self.first = self._sample()
        self.last = dict(self.first)
        self._thread.start()

    def stop(self) -> float:
        self._stopped.set()
        self._thread.join()
        return sum(cpu - self.first.get(pid, 0.0) for pid, cpu in self.last.items())


async def wait_for_stdin_close() -> None:
    """For child processes: returns when the parent closes our standard input."""
    await asyncio.to_thread(sys.stdin.read)


def announce(**data: Any) -> None:
    """For child processes: the ready (or result) line the parent reads."""
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = await fn()
    return time.perf_counter() - start, out


def log(message: str) -> None:
    print(f"  . {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Config:
    """How big a run is: the full suite, or the smoke run CI does (seconds, no targets)."""

    smoke: bool = False
    repeat: int = 3

    def pick(self, full: Any, smoke: Any) -> Any:
        return smoke if self.smoke else full

    @property
    def runs(self) -> int:
        return 1 if self.smoke else self.repeat
