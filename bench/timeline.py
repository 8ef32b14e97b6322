"""A fan-out run's phases, read from the store once it is over: what the run pays once, which a
rate at 2,000 tasks weighs five times as much as one at 10,000.

    python -m bench.timeline sqlite|postgres [TASKS]

Runs bench.throughput's fan-out case (one job; one worker of 100 slots; its first task
creates TASKS tasks with BatchCreateTasks and completes), then prints, in ms from the
workers' start signal: when the first task started and finished, when its children were
created, started and finished (first..last), and each event type's first..last and count.
The store's own stamps (started_at is the claim's, finished_at the report group's), one
clock. Run it with the database's statement log on (PostgreSQL's
`log_min_duration_statement = 0`) to put each statement on the same line of time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt

from jobtask.store.database import Database
from jobtask.store.rows import utc
from jobtask.store.schema import events, job_tasks
from sqlalchemy import func, select

from bench.fleet import fleet
from bench.stack import database, running
from bench.throughput import SLOTS

# (Through the tables' columns: SQLite's stamps come back as datetimes only typed so.)
_TASKS = select(
    job_tasks.c.created_at,
    job_tasks.c.started_at,
    job_tasks.c.finished_at,
    job_tasks.c.created_by_job_task_uuid.is_(None).label("first"),
).order_by(job_tasks.c.id)
_FIRST = func.min(events.c.created_at)
_EVENTS = (
    select(events.c.type, _FIRST, func.max(events.c.created_at), func.count())
    .group_by(events.c.type)
    .order_by(_FIRST)
)


def _span(times: list[float]) -> str:
    return f"{min(times):,.0f}..{max(times):,.0f}" if times else "-"


async def timeline(kind: str, count: int) -> list[str]:
    """The run's phases as lines (see the module's text)."""
    async with database(kind) as url, running(url) as stack:
        await stack.submit()
        async with fleet(stack, 1, SLOTS, creator=count) as f:
            f.go()
            seconds = await f.until(count + 1)
            await f.finish()
        start = dt.datetime.fromtimestamp(f.started, dt.UTC)

        def ms(value: dt.datetime | None) -> float:
            stamped = utc(value)
            assert stamped is not None
            return (stamped - start).total_seconds() * 1000

        db = Database(url)
        try:
            async with db.read() as conn:
                tasks = (await conn.execute(_TASKS)).all()
                events = (await conn.execute(_EVENTS)).all()
        finally:
            await db.dispose()
    firsts = [row for row in tasks if row.first]
    children = [row for row in tasks if not row.first]
    lines = [f"{kind}: {count:,} tasks in {seconds * 1000:,.0f} ms from the workers' start"]
    for row in firsts:
        lines.append(
            f"  first task: started {ms(row.started_at):,.0f}, finished {ms(row.finished_at):,.0f}"
        )
    lines.append(
        f"  children: created {_span([ms(r.created_at) for r in children])},"
        f" started {_span([ms(r.started_at) for r in children])},"
        f" finished {_span([ms(r.finished_at) for r in children])}"
    )
    for type_, first, last, n in events:
        lines.append(f"  {type_:<14} {ms(first):>9,.0f} .. {ms(last):>9,.0f}  ({n:,})")
    return lines


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.timeline")
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("tasks", nargs="?", type=int, default=2000)
    args = parser.parse_args()
    for line in asyncio.run(timeline(args.kind, args.tasks)):
        print(line)


if __name__ == "__main__":
    cli()
