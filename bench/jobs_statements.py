"""Each SQL statement of the one-task jobs' drain (bench.jobs_cycle's claims and
completions, on SQLite, in this process), by the CPU its driver call took a job:

    python -m bench.jobs_statements [JOBS]

Timed from SQLAlchemy's before_cursor_execute to after_cursor_execute with this thread's
CPU clock (an executemany is one call: the sqlite3 module's binding and SQLite's work for
every row; a SELECT's fetching comes after and is not counted). Thread time, not wall
time: the ranking holds on a shared machine, where wall times moved by half run to run.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from bench.jobs_cycle import cycle

# Printed: a statement's first characters (the SET lists of the flush's UPDATEs differ late).
WIDTH = 150


@contextmanager
def timed() -> Iterator[dict[str, list[float]]]:
    """Per statement text: [calls, rows, CPU seconds] of every engine's cursor calls in
    this thread while the block runs."""
    found: dict[str, list[float]] = {}
    # Statements do not nest: one start at a time (one that raised is overwritten).
    started = [0.0]

    def before(*_args: Any) -> None:
        started[0] = time.thread_time()

    def after(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, many: bool
    ) -> None:
        spent = time.thread_time() - started[0]
        entry = found.setdefault(statement, [0, 0, 0.0])
        entry[0] += 1
        entry[1] += len(parameters) if many else 1
        entry[2] += spent

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    try:
        yield found
    finally:
        event.remove(Engine, "before_cursor_execute", before)
        event.remove(Engine, "after_cursor_execute", after)


def report(found: dict[str, list[float]], jobs: int) -> str:
    """The statements, costliest first: µs a job, calls, rows, the text's start."""
    total = sum(entry[2] for entry in found.values())
    lines = [f"{jobs} jobs: statements' driver CPU {total / jobs * 1e6:.1f} µs a job"]
    for text, (calls, rows, spent) in sorted(found.items(), key=lambda kv: -kv[1][2]):
        shown = " ".join(text.split())[:WIDTH]
        lines.append(
            f"{spent / jobs * 1e6:7.1f} µs  {int(calls):5d} calls {int(rows):6d} rows  {shown}"
        )
    return "\n".join(lines)


async def statements(url: str, jobs: int) -> str:
    """The drain's statements of `jobs` one-task jobs (their submission not counted)."""
    with timed() as found:
        summary = await cycle(url, jobs, skip=False, drained=found.clear)
    done = int(summary.split(" ", 1)[0])
    return summary + "\n" + report(found, max(done, 1))


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'jobtask.sqlite3'}"
        print(asyncio.run(statements(url, jobs)))


if __name__ == "__main__":
    main()
