"""`jobtask workers`: the worker registry (every worker seen, its state, slots and tasks;
stopped and lost ones until TaskService prunes them, after --worker-retention)."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from jobtask.cli import render
from jobtask.sdk.client import AsyncClient
from jobtask.v1 import worker_pb2


def add_command(sub: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "workers",
        parents=[common],
        help="list the workers: state (live, lost, stopped), slots, tasks running now",
    )
    p.set_defaults(run=list_workers)


def state(value: int) -> str:
    return worker_pb2.WorkerState.Name(value).removeprefix("WORKER_STATE_").lower()


def _ago(worker: worker_pb2.Worker, now: dt.datetime) -> str:
    seconds = (now - worker.last_seen_at.ToDatetime(dt.UTC)).total_seconds()
    return f"{max(0, round(seconds))}s ago"


def worker_rows(workers: list[worker_pb2.Worker]) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    return render.table(
        (
            (
                w.worker_id,
                w.node_name,
                state(w.state),
                f"{w.slots - w.free_slots}/{w.slots}",
                str(w.cores),
                f"{w.ram_kib // 1024} MiB",
                f"{w.tasks_finished}/{w.tasks_failed}",
                _ago(w, now),
                ",".join(w.tags),
                " ".join(w.task_uuids),
            )
            for w in workers
        ),
        (
            "WORKER",
            "NODE",
            "STATE",
            "BUSY",
            "CORES",
            "RAM",
            "DONE/FAILED",
            "SEEN",
            "TAGS",
            "TASKS",
        ),
    )


async def list_workers(args: argparse.Namespace, client: AsyncClient) -> int:
    workers = await client.workers()
    if args.json:
        render.print_json(workers)
    else:
        print("\n".join(worker_rows(workers)))
    return 0
