"""A report group's lock alone on PostgreSQL (locks.lock_pairs): CPU a task in this process,
the task rows taken from the claim's kept rows (jobtask.store.kept_tasks) or read whole.

    python -m bench.group_lock [--tasks N] [--rounds R] [--against COMMIT]

One active job with N queued tasks, claimed by one ClaimManager claim (which keeps their
rows); then, R times over, 300 write transactions each locking the N tasks and rolled back,
with the kept rows ("kept") and without ("whole"), alternated. CPU, not wall clock: steady on
a shared machine where the fan-out's own figures move by ±10 %.

--against COMMIT: the kept rows' lock of this checkout ("kept") against the same lock as
jobtask.store.locks was at COMMIT ("kept@COMMIT": its file, from `git show`, loaded beside
this one), alternated in one process; with the database's CPU a task for each. Two
checkouts run in turn differ by more than such a change here (each process its own heap,
its own moment on a shared machine); one process taking turns does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType

from jobtask.manager.claims import ClaimManager
from jobtask.manager.context import Settings, WorkerSpec
from jobtask.store import locks
from jobtask.store.database import PostgresDatabase
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.claim_path import one_job_queued
from bench.harness import PostgresCpu
from bench.stack import postgres_database

LOCKS = 300


class _Undo(Exception):
    """Rolls a measured transaction back."""


async def group_lock(
    tasks: int, rounds: int, locks_per_round: int = LOCKS, against: str | None = None
) -> dict[str, list[float]]:
    async with postgres_database() as plain:
        db = await one_job_queued(plain, tasks)
        assert isinstance(db, PostgresDatabase)
        try:
            settings = Settings()
            worker = WorkerSpec(worker_id="w1", node_name="n1", free_slots=tasks)
            claims = await ClaimManager(db, settings).claim(settings.system_caller(), worker, tasks)
            uuids = [c.task.uuid for c in claims]
            kept = dict(db.kept_tasks.rows)
            database = make_url(db.url).database or ""

            async def run(n: int, module: ModuleType) -> tuple[float, float]:
                async def lock(conn: AsyncConnection) -> None:
                    await module.lock_pairs(conn, uuids)
                    raise _Undo

                backends = PostgresCpu(database)
                backends.start()
                started = time.process_time()
                for _ in range(n):
                    with contextlib.suppress(_Undo):
                        await db.transact(lock)
                mine = time.process_time() - started - backends.own
                per = n * len(uuids) / 1e6
                return round(mine / per, 1), round(backends.stop() / per, 1)

            modes: dict[str, tuple[ModuleType, bool]] = {"kept": (locks, True)}
            if against is None:
                modes["whole"] = (locks, False)
            else:
                modes[f"kept@{against}"] = (_locks_at(against), True)
            out: dict[str, list[float]] = {}
            for r in range(rounds):
                # Each mode first in turn.
                for mode, (module, keep) in sorted(modes.items(), reverse=r % 2 == 1):
                    db.kept_tasks.rows.clear()
                    if keep:
                        db.kept_tasks.rows.update(kept)
                    await run(max(1, locks_per_round // 10), module)  # (warm)
                    hits = db.kept_tasks.hits
                    mine, backends = await run(locks_per_round, module)
                    if keep and db.kept_tasks.hits - hits != locks_per_round:
                        raise RuntimeError(f"{mode}: the kept rows were not used every time")
                    out.setdefault(mode, []).append(mine)
                    if against is not None:
                        out.setdefault(f"{mode} (database)", []).append(backends)
            return out
        finally:
            await db.dispose()


def _locks_at(commit: str) -> ModuleType:
    """jobtask.store.locks as it was at `commit`, loaded as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{commit}:services/jobtask/store/locks.py"],
        cwd=Path(__file__).resolve().parent,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.TemporaryDirectory() as where:  # (gone once the module is loaded)
        path = Path(where) / "locks_then.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("locks_then", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", help="a commit: its locks.lock_pairs beside this one's")
    args = parser.parse_args()
    figures = asyncio.run(group_lock(args.tasks, args.rounds, against=args.against))
    print(json.dumps({"us_a_task": figures}))


if __name__ == "__main__":
    main()
