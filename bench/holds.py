"""How long a PostgreSQL fan-out's claims and report groups hold their job's row, and how
often a backend waits for a row lock meanwhile.

    python -m bench.holds [--tasks N]

One `postgres:fanout` run (bench.throughput.jobtask_fanout: one job, one worker of 100
slots) with the server started with `--holds FILE`: `Holds` stamps, per transaction, the
moment its first statement locking a job's row returned (a statement that reads `jobs`
FOR UPDATE, not the tasks' own lock, whose EXISTS probe reads jobs without locking them)
and the moment its connection went back to the pool after the COMMIT. A transaction is a
claim if it took a node's claim turn (pg_advisory_xact_lock), a report group if it named
tasks by uuid to lock them (`named_tasks`) or ran the claims' deferred jobs' statement's
sibling for groups; a guarded report group or claim (one statement, its own transaction:
jobtask.manager.reports' _apply_kept, jobtask.manager.claims' _claim_guarded) is counted as
holding the row from its send to its answer, its wait for the lock included. Meanwhile this
process samples pg_stat_activity every few ms: the share of samples in which a backend of the
run's database waited for a row lock (`Lock:transactionid` or `Lock:tuple`); and the CPU each
role spent a task. Also: each statement run while the row was held, by its first words (mean
ms), and all holds together as a share of the measured window (`held_share_of_window`; near
1, claims and groups took turns on the row all along; it can pass 1 a little, each hold
being stamped to its connection's return to the pool, after the COMMIT).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
from sqlalchemy import Connection, Engine, event
from sqlalchemy.pool import Pool

from bench import throughput
from bench.stack import _dsn, postgres_admin_url


def _locks_job(sql: str) -> bool:
    if "FOR UPDATE" not in sql:
        return False
    if "held_jobs" in sql:
        return True  # a group's jobs then tasks (locks.lock_pairs), stamped at its return
    if "FOR UPDATE OF job_tasks" in sql:
        return False  # the tasks' lock (its job probe reads jobs unlocked)
    return "FROM jobs" in sql


def _head(sql: str) -> str:
    """A statement's first words, its whitespace folded: its name in the figures."""
    return " ".join(sql.split())[:60]


_GUARDED = ("guarded claim", "guarded group")


def _kind(sql: str) -> str | None:
    if "held_tasks AS (SELECT" in sql:
        # (A claim's guard asks whether its tasks are still runnable.)
        return "guarded claim" if "jobtask_unrunnable" in sql else "guarded group"
    if "pg_advisory_xact_lock" in sql:
        return "claim"
    if "named_tasks" in sql:
        return "group"
    return None


@dataclass
class _Open:
    kind: str | None = None
    locked: float | None = None
    commit: float | None = None
    # Each statement's first words, in order: the round trips a transaction took (its
    # BEGIN and COMMIT apart: one each).
    statements: list[str] = field(default_factory=list)
    # The hold's parts (seconds): in statements after the lock, in this process between
    # them (Python, the event loop, waiting for a core), and the COMMIT to the checkin.
    started: float | None = None
    in_statements: float = 0.0
    # Each statement run while the row was held: (its first words, seconds).
    timed: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Holds:
    """Per transaction of this process's engines: its kind, the job's row held (the first
    job-locking statement's return to the connection's return to the pool), in seconds."""

    done: list[tuple[str, float]] = field(default_factory=list)
    parts: list[tuple[str, float, float, float]] = field(default_factory=list)
    shapes: list[tuple[str, list[str]]] = field(default_factory=list)
    timed: list[tuple[str, list[tuple[str, float]]]] = field(default_factory=list)
    database: str | None = None
    open: dict[int, _Open] = field(default_factory=dict)

    def __post_init__(self) -> None:
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)
        event.listen(Engine, "commit", self._commit)
        event.listen(Engine, "rollback", self._rollback)
        event.listen(Pool, "checkin", self._checkin)

    def _before(
        self, conn: Connection, cursor: Any, sql: str, params: Any, context: Any, many: bool
    ) -> None:
        if self.database is None:
            self.database = conn.engine.url.database
        txn = self.open.setdefault(id(conn.connection.dbapi_connection), _Open())
        kind = _kind(sql)
        # A guarded claim's reads come first on its connection, each a transaction of its
        # own (the turn's among them): its guarded statement names what it was.
        txn.kind = kind if kind in _GUARDED else txn.kind or kind
        txn.statements.append(_head(sql))
        txn.started = time.perf_counter()

    def _after(
        self, conn: Connection, cursor: Any, sql: str, params: Any, context: Any, many: bool
    ) -> None:
        txn = self.open.get(id(conn.connection.dbapi_connection))
        if txn is None:
            return
        if txn.kind in _GUARDED and txn.started is not None:
            # A transaction of its own (Database.alone): the row is held while it runs, at
            # most from its send to its answer here (the database commits and unlocks
            # before it answers, so this overstates the hold by the answer's way back).
            took = time.perf_counter() - txn.started
            self.open.pop(id(conn.connection.dbapi_connection), None)
            self.done.append((txn.kind, took))
            self.parts.append((txn.kind, took, 0.0, 0.0))
            self.shapes.append((txn.kind, txn.statements))
            self.timed.append((txn.kind, [(_head(sql), took)]))
            return
        if txn.locked is not None and txn.started is not None:
            took = time.perf_counter() - txn.started
            txn.in_statements += took
            txn.timed.append((_head(sql), took))
        elif _locks_job(sql):
            txn.locked = time.perf_counter()

    def _commit(self, conn: Connection) -> None:
        txn = self.open.get(id(conn.connection.dbapi_connection))
        if txn is not None:
            txn.commit = time.perf_counter()

    def _rollback(self, conn: Connection) -> None:
        self.open.pop(id(conn.connection.dbapi_connection), None)

    def _checkin(self, dbapi_connection: Any, record: Any) -> None:
        txn = self.open.pop(id(dbapi_connection), None)
        if txn is not None and txn.kind is not None and txn.commit is not None:
            self.shapes.append((txn.kind, txn.statements))
        if txn is None or txn.kind is None or txn.locked is None or txn.commit is None:
            return
        now = time.perf_counter()
        self.done.append((txn.kind, now - txn.locked))
        self.timed.append((txn.kind, txn.timed))
        committing = now - txn.commit
        between = txn.commit - txn.locked - txn.in_statements
        self.parts.append((txn.kind, txn.in_statements, between, committing))

    def dump(self, path: str) -> None:
        Path(path).write_text(
            json.dumps(
                {
                    "database": self.database,
                    "holds": self.done,
                    "shapes": self.shapes,
                    "parts": self.parts,
                    "timed": self.timed,
                }
            )
        )


async def _sample(stop: asyncio.Event, seen: list[tuple[float, list[tuple[str, str]]]]) -> None:
    conn = await asyncpg.connect(_dsn(postgres_admin_url(), "postgres"))
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT datname, coalesce(wait_event_type || ':' || wait_event, '') AS w"
                " FROM pg_stat_activity WHERE datname LIKE 'jobtask_bench%'"
                " AND state = 'active'"
            )
            seen.append((time.time(), [(r["datname"], r["w"]) for r in rows]))
            await asyncio.sleep(0.003)
    finally:
        await conn.close()


async def measure(tasks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jobtask-holds-") as tmp:
        path = str(Path(tmp) / "holds.json")
        seen = throughput.Observed(server_args=("--holds", path))
        stop = asyncio.Event()
        samples: list[tuple[float, list[tuple[str, str]]]] = []
        sampler = asyncio.create_task(_sample(stop, samples))
        try:
            rate, note = await throughput.jobtask_fanout("postgres", tasks, 1, seen)
        finally:
            stop.set()
            await sampler
        dumped = json.loads(await asyncio.to_thread(Path(path).read_text))
    start, end = seen.window
    database = dumped["database"]
    inside = [[w for d, w in rows if d == database] for t, rows in samples if start <= t <= end]
    row_locks = ("Lock:transactionid", "Lock:tuple")
    waiting = sum(1 for rows in inside if any(w in row_locks for w in rows))
    out: dict[str, Any] = {"rate": round(rate), "note": note, "samples": len(inside)}
    out["row_lock_wait_share"] = round(waiting / len(inside), 3) if inside else None
    # CPU a task, by role (bench.harness.Meter: the server, the worker, PostgreSQL's
    # backends), over the drain.
    out["cpu_us_per_task"] = {role: round(s / tasks * 1e6) for role, s in seen.cpu.items()}
    # The job's row held by claims and groups together, as a share of the measured window:
    # near 1, they took turns on it all along, and the row set the pace.
    held = sum(h for _, h in dumped["holds"])
    out["held_share_of_window"] = round(held / (end - start), 3) if end > start else None
    for kind in ("claim", "guarded claim", "group", "guarded group"):
        holds = [h for k, h in dumped["holds"] if k == kind]
        if holds:
            out[kind] = {
                "transactions": len(holds),
                "mean_ms": round(statistics.mean(holds) * 1000, 2),
                "median_ms": round(statistics.median(holds) * 1000, 2),
                "total_ms": round(sum(holds) * 1000, 1),
                "per_task_us": round(sum(holds) / tasks * 1e6, 1),
            }
        parts = [p for k, *p in dumped.get("parts", []) if k == kind]
        if parts:
            out[kind]["hold_parts_mean_ms"] = {
                name: round(statistics.mean(p[i] for p in parts) * 1000, 2)
                for i, name in enumerate(("statements", "between", "commit"))
            }
        shapes = [s for k, s in dumped.get("shapes", []) if k == kind]
        if shapes:
            heads: dict[str, int] = {}
            for statements in shapes:
                for head in statements:
                    heads[head] = heads.get(head, 0) + 1
            out.setdefault(kind, {})["statements_per_transaction"] = round(
                sum(len(s) for s in shapes) / len(shapes), 2
            )
            out[kind]["statements"] = dict(sorted(heads.items(), key=lambda kv: -kv[1]))
        # Each statement run while the row was held: mean ms a transaction that ran it.
        timed = [t for k, t in dumped.get("timed", []) if k == kind]
        if timed:
            spent: dict[str, list[float]] = {}
            for statements in timed:
                for head, took in statements:
                    spent.setdefault(head, []).append(took)
            out.setdefault(kind, {})["held_statements_mean_ms"] = {
                head: round(statistics.mean(t) * 1000, 2)
                for head, t in sorted(spent.items(), key=lambda kv: -sum(kv[1]))
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.tasks)), indent=2))


if __name__ == "__main__":
    main()
