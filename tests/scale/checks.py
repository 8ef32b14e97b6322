"""What the scale tests assert, read straight from the database and the scripts' run log."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import grpc
from jobtask.store.schema import TASK_STATUS_COUNTS
from jobtask.v1 import job_service_pb2, job_service_pb2_grpc, watch_pb2
from sqlalchemy.engine import make_url

from tests.conftest import token_channel


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


@dataclass
class Watched:
    """What one WatchJob stream delivered: the snapshot's position, then each event's seq."""

    job_uuid: str
    snapshot_seq: int = -1
    seqs: list[int] = field(default_factory=list)
    terminal_status: int = 0


async def watch_job(addr: str, token: str, job_uuid: str, within: float) -> Watched:
    """Follows one job on the JobService at `addr` until the server ends the stream (the job
    is terminal and every event up to then was sent). No resuming: a gap would show."""
    seen = Watched(job_uuid)
    channel = token_channel(addr, token)
    try:
        stub: Any = job_service_pb2_grpc.JobServiceStub(channel)
        call = stub.WatchJob(job_service_pb2.WatchJobRequest(uuid=job_uuid), timeout=within)
        async for event in call:
            if event.type == watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT:
                seen.snapshot_seq = event.seq
                continue
            if event.type == watch_pb2.WATCH_EVENT_TYPE_HEARTBEAT:
                continue
            seen.seqs.append(event.seq)
            if event.type == watch_pb2.WATCH_EVENT_TYPE_JOB_CHANGED:
                seen.terminal_status = event.job.status
    finally:
        await channel.close(None)
    return seen


async def check_watch(url: str, seen: Watched) -> None:
    """The watcher saw every event of its job after its snapshot, each once, in order."""
    assert seen.snapshot_seq >= 0, "no snapshot"
    assert all(a < b for a, b in itertools.pairwise(seen.seqs)), "seq not strictly increasing"
    rows = await fetch(
        url,
        "SELECT seq FROM events WHERE job_uuid = $1 AND seq > $2 ORDER BY seq",
        seen.job_uuid,
        seen.snapshot_seq,
    )
    expected = [r["seq"] for r in rows]
    missing = sorted(set(expected) - set(seen.seqs))
    extra = sorted(set(seen.seqs) - set(expected))
    assert not missing and not extra, (
        f"job {seen.job_uuid}: {len(missing)} events missed (first {missing[:5]}), "
        f"{len(extra)} not in the feed (first {extra[:5]})"
    )
    assert seen.seqs == expected


@dataclass
class History:
    tasks: int
    attempts_per_task: Counter[str]
    runs_per_task: Counter[str]
    attempts_by_worker_after: Counter[str]


async def check_history(
    url: str, runlog: Path, *, tasks: int, since: dt.datetime | None = None
) -> History:
    """Every job and task completed; per task exactly one completed attempt, no two attempts
    overlapping in time, every attempt closed; every child task's script ran (the run log),
    and never more often than the task had attempts."""
    jobs = await fetch(url, "SELECT uuid, status, n_completed FROM jobs")
    assert jobs and all(j["status"] == "completed" for j in jobs), [tuple(j) for j in jobs]
    rows = await fetch(url, "SELECT uuid, status, sequence FROM job_tasks")
    assert len(rows) == tasks, f"{len(rows)} tasks, not {tasks}"
    # The job rows' task counts, updated by every replica's claims and completions, lost
    # no update: each equals a count of the tasks themselves.
    counts = ", ".join(f"j.{column}" for column in TASK_STATUS_COUNTS)
    per_job = await fetch(
        url,
        f"""SELECT j.uuid, {counts}, count(t.id) AS tasks,
                   count(t.id) FILTER (WHERE t.status = 'completed') AS completed
            FROM jobs j LEFT JOIN job_tasks t ON t.job_id = j.id GROUP BY j.id""",
    )
    for job in per_job:
        expected = dict.fromkeys(TASK_STATUS_COUNTS, 0) | {"n_completed": job["tasks"]}
        assert job["completed"] == job["tasks"], tuple(job)
        assert {column: job[column] for column in TASK_STATUS_COUNTS} == expected, tuple(job)
    not_done = [tuple(r) for r in rows if r["status"] != "completed"]
    assert not not_done, not_done[:5]
    attempts = await fetch(
        url,
        """SELECT t.uuid, a.attempt, a.worker_id, a.started_at, a.ended_at, a.outcome
           FROM task_attempts a JOIN job_tasks t ON t.id = a.task_id
           ORDER BY t.uuid, a.started_at, a.attempt""",
    )
    by_task: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for a in attempts:
        by_task[a["uuid"]].append(a)
    assert len(by_task) == tasks, f"{tasks - len(by_task)} tasks never attempted"
    for uuid, history in by_task.items():
        assert all(a["ended_at"] is not None for a in history), (uuid, history)
        outcomes = [a["outcome"] for a in history]
        assert outcomes.count("completed") == 1, (uuid, outcomes)
        assert outcomes[-1] == "completed", (uuid, outcomes)
        for earlier, later in itertools.pairwise(history):
            assert earlier["ended_at"] <= later["started_at"], (
                f"task {uuid}: attempts overlap: {tuple(earlier)} and {tuple(later)}"
            )
    text = await asyncio.to_thread(runlog.read_text)
    runs = Counter(line.split()[0] for line in text.splitlines())
    children = {r["uuid"] for r in rows if r["sequence"] == 1}
    assert set(runs) == children, (
        f"{len(children - set(runs))} child tasks never ran, "
        f"{len(set(runs) - children)} unknown tasks ran"
    )
    attempts_per_task = Counter({uuid: len(h) for uuid, h in by_task.items()})
    for uuid, n in runs.items():
        assert n <= attempts_per_task[uuid], (
            f"task {uuid}: ran {n} times in {attempts_per_task[uuid]} attempts"
        )
    after = Counter(
        a["worker_id"] for a in attempts if since is not None and a["started_at"] > since
    )
    return History(tasks, attempts_per_task, runs, after)


async def completed_tasks(url: str) -> int:
    rows = await fetch(url, "SELECT count(*) AS n FROM job_tasks WHERE status = 'completed'")
    return int(rows[0]["n"])


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE
