"""A report group's lock alone on PostgreSQL (locks.lock_pairs): CPU a task in this process,
the task rows taken from the claim's kept rows (jobtask.store.kept_tasks) or read whole.

    python -m bench.group_lock [--tasks N] [--rounds R]

One active job with N queued tasks, claimed by one ClaimManager claim (which keeps their
rows); then, R times over, 300 write transactions each locking the N tasks and rolled back,
with the kept rows ("kept") and without ("whole"), alternated. CPU, not wall clock: steady on
a shared machine where the fan-out's own figures move by ±10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time

from jobtask.manager.claims import ClaimManager
from jobtask.manager.context import Settings, WorkerSpec
from jobtask.store import locks
from jobtask.store.database import PostgresDatabase
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.claim_path import one_job_queued
from bench.stack import postgres_database

LOCKS = 300


class _Undo(Exception):
    """Rolls a measured transaction back."""


async def group_lock(
    tasks: int, rounds: int, locks_per_round: int = LOCKS
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

            async def lock(conn: AsyncConnection) -> None:
                await locks.lock_pairs(conn, uuids)
                raise _Undo

            async def run(n: int) -> float:
                started = time.process_time()
                for _ in range(n):
                    with contextlib.suppress(_Undo):
                        await db.transact(lock)
                return (time.process_time() - started) / n / len(uuids) * 1e6

            out: dict[str, list[float]] = {"kept": [], "whole": []}
            for _ in range(rounds):
                for mode in out:
                    db.kept_tasks.rows.clear()
                    if mode == "kept":
                        db.kept_tasks.rows.update(kept)
                    await run(max(1, locks_per_round // 10))  # (warm)
                    out[mode].append(round(await run(locks_per_round), 1))
            if db.kept_tasks.hits == 0:
                raise RuntimeError("the kept rows were never used")
            return out
        finally:
            await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps({"us_a_task": asyncio.run(group_lock(args.tasks, args.rounds))}))


if __name__ == "__main__":
    main()
