"""One chaos cell: the deployment as processes (tests/scale's Topology), jobs of
tests/scripts/chaos_task submitted and watched, a fault injected midway, then the history
checked and the figures taken.

Sizes: CI runs a short cell (JOBTASK_CHAOS_TASKS, default 60 tasks in 2 jobs);
JOBTASK_CHAOS_FULL=1 (`make chaos`) runs the issue's 2,000 in 4 jobs and holds each fault
longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from jobtask.sdk import AsyncClient
from jobtask.sdk.errors import JobtaskError
from jobtask.store.database import Database
from jobtask.v1 import watch_pb2
from sqlalchemy import text

from tests.chaos import history
from tests.chaos.postgres import free_port
from tests.scale.conftest import ROOT_TOKEN, Part, Topology

FULL = os.environ.get("JOBTASK_CHAOS_FULL") == "1"
TASKS = int(os.environ.get("JOBTASK_CHAOS_TASKS", "2000" if FULL else "60"))
JOBS = 4 if FULL else 2
WORKERS = 4
SLOTS = 2
# How long a fault is held (an outage, a lock, full disk), in seconds.
HOLD = 10.0 if FULL else 2.0
WITHIN = float(os.environ.get("JOBTASK_CHAOS_WITHIN", "900" if FULL else "240"))

RESULTS: list[history.Figures] = []


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Cell:
    name: str
    topology: Topology
    url: str
    jobs: list[Part] = field(default_factory=list)
    tasks: list[Part] = field(default_factory=list)
    workers: list[Part] = field(default_factory=list)
    gateway_addr: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    token: str = ""
    job_uuids: list[str] = field(default_factory=list)
    watched: list[history.Watched] = field(default_factory=list)
    watchers: list[asyncio.Task[None]] = field(default_factory=list)
    restarts: int = 0

    @property
    def runlog(self) -> Path:
        return self.topology.tmp_path / "runs.log"

    @property
    def jobs_addr(self) -> str:
        return f"127.0.0.1:{self.ports['jobs']}"

    @property
    def tasks_addrs(self) -> list[str]:
        return [f"127.0.0.1:{self.ports[f'tasks{i}']}" for i in range(len(self.tasks))]

    # -- the deployment ---------------------------------------------------------------------

    async def start_split(self) -> None:
        """2 TaskService replicas, 1 JobService, the gateway, 4 workers (PostgreSQL), each
        service on a port of its own that a restart takes again."""
        self.ports = {"jobs": free_port(), "tasks0": free_port(), "tasks1": free_port()}
        parts = await asyncio.gather(
            self.topology.serve("jobs", "jobs0", port=self.ports["jobs"]),
            self.topology.serve("tasks", "tasks0", port=self.ports["tasks0"]),
            self.topology.serve("tasks", "tasks1", port=self.ports["tasks1"]),
        )
        self.jobs, self.tasks = [parts[0]], list(parts[1:])
        gateway = await self.topology.gateway(self.jobs_addr, ",".join(self.tasks_addrs))
        self.gateway_addr = gateway.addr
        await self.start_workers(self.jobs_addr, self.tasks_addrs)

    async def start_up(self, *, prefix: list[str] | None = None) -> None:
        """`jobtask up` (SQLite, one process with the gateway; under the `prefix` command if
        given) and 4 workers."""
        self.ports = {"jobs": free_port(), "tasks0": free_port(), "gateway": free_port()}
        await self.spawn_up(prefix=prefix)
        await self.start_workers(self.jobs_addr, [f"127.0.0.1:{self.ports['tasks0']}"])

    async def spawn_up(self, *, prefix: list[str] | None = None) -> Part:
        name = f"up{self.restarts}" if self.restarts else "up"
        args = [
            "up",
            "--jobs-listen",
            self.jobs_addr,
            "--tasks-listen",
            f"127.0.0.1:{self.ports['tasks0']}",
            "--gateway-listen",
            f"127.0.0.1:{self.ports['gateway']}",
        ]
        env = self.topology.env()
        if prefix:
            part = await self._spawn_wrapped(name, prefix, args, env)
        else:
            part = await self.topology._spawn(name, args, env)
        assert part.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(part.proc.stdout.readline(), 60)
            assert line, f"jobtask up ended:\n{part.log()}"
            if found := re.match(rb"gateway:\s+http://(\S+)", line):
                self.gateway_addr = found.group(1).decode()
            if line.startswith(b"press Ctrl-C"):
                break
        self.jobs = self.tasks = [part]
        return part

    async def _spawn_wrapped(
        self, name: str, prefix: list[str], args: list[str], env: dict[str, str]
    ) -> Part:
        """`jobtask ARGS` run under a wrapper command (setpriv, to drop a capability)."""
        log_path = self.topology.tmp_path / f"{name}.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *prefix,
                sys.executable,
                "-m",
                "jobtask.cli.main",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=self.topology.tmp_path,
            )
        part = Part(name, proc, log_path)
        self.topology.parts.append(part)
        return part

    async def start_workers(self, jobs_addr: str, tasks_addrs: list[str]) -> None:
        self.token = await self.topology.worker_token()
        self.workers = list(
            await asyncio.gather(*(self.add_worker(f"w{i}", i) for i in range(WORKERS)))
        )

    async def add_worker(self, name: str, i: int) -> Part:
        addrs = self.tasks_addrs if len(self.tasks) > 1 else [f"127.0.0.1:{self.ports['tasks0']}"]
        first = i % len(addrs)
        return await self.topology.worker(
            name,
            jobs_addr=self.jobs_addr,
            tasks_addr=",".join(addrs[first:] + addrs[:first]),
            token=self.token,
            slots=SLOTS,
        )

    async def kill(self, part: Part) -> None:
        self.topology.kill(part)
        await part.proc.wait()

    async def restart(self, part: Part) -> Part:
        """The same service again, on the same port."""
        self.restarts += 1
        kind, index = ("jobs", None) if part in self.jobs else ("tasks", self.tasks.index(part))
        key = "jobs" if index is None else f"tasks{index}"
        fresh = await self.topology.serve(kind, f"{key}-r{self.restarts}", port=self.ports[key])
        if index is None:
            self.jobs = [fresh]
        else:
            self.tasks[index] = fresh
        return fresh

    # -- the work ---------------------------------------------------------------------------

    async def submit(self) -> None:
        self.runlog.touch()
        children = TASKS // JOBS - 1
        async with AsyncClient.connect(self.jobs_addr, self.jobs_addr, ROOT_TOKEN) as client:
            for n in range(JOBS):
                job = await client.submit(
                    "chaos_task",
                    {"children": children, "runlog": str(self.runlog), "n": n},
                    allow_duplicate=True,
                )
                self.job_uuids.append(job.uuid)
        for uuid in self.job_uuids:
            seen = history.Watched(uuid)
            self.watched.append(seen)
            self.watchers.append(asyncio.create_task(self._watch(seen)))

    async def _watch(self, seen: history.Watched) -> None:
        """jobtask.sdk's resuming watch on the JobService, counting its breaks."""

        def on_break(error: JobtaskError | None) -> None:
            if error is not None:
                seen.breaks += 1

        async with AsyncClient.connect(self.jobs_addr, self.jobs_addr, ROOT_TOKEN) as client:
            stream = client.watch(seen.job_uuid, reconnect_for=WITHIN, on_break=on_break)
            async for event in stream:
                if event.type == watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT:
                    if event.snapshot_done:
                        seen.snapshot_seq = event.seq
                    continue
                seen.seqs.append(event.seq)
        seen.terminal = True

    def ended_runs(self) -> int:
        text = self.runlog.read_text()
        return text.count("\nend ") + text.startswith("end ")

    async def until_runs(self, n: int) -> None:
        deadline = time.monotonic() + WITHIN
        while self.ended_runs() < n:
            assert time.monotonic() < deadline, f"{self.ended_runs()} runs ended\n" + self.logs()
            await asyncio.sleep(0.2)

    async def progressed(self, fraction: float) -> None:
        await self.until_runs(int(TASKS * fraction))

    def logs(self) -> str:
        return self.topology.logs()

    # -- the verdict ------------------------------------------------------------------------

    async def finish(self, fault: history.Fault) -> history.Figures:
        """Waits for every job to end (its watcher's stream ends), then checks the history
        and records the figures. Fails the test on any problem."""
        try:
            await asyncio.wait_for(asyncio.gather(*self.watchers), WITHIN)
        except TimeoutError:
            for w in self.watchers:
                w.cancel()
            left = await stuck(self.url)
            raise AssertionError(
                f"{self.name}: jobs not done in {WITHIN}s\n{left}\n" + self.logs()
            ) from None
        lingering = await lingering_transactions(self.url)
        assert not lingering, (
            f"{self.name}: every job ended, yet store sessions are still in old transactions "
            "(a transaction its process forgot holds its locks and never commits):\n"
            + "\n".join(lingering)
            + "\n"
            + self.logs()
        )
        summaries = await self.summaries()
        ttl = dt.timedelta(seconds=self.topology.lease_ttl)
        found = await history.check(self.url, self.runlog, self.watched, summaries, ttl)
        figures = history.figures(self.name, found, fault, self.watched)
        RESULTS.append(figures)
        print("\n" + history.table([figures]))
        assert not found.problems, "\n".join(found.problems[:40]) + "\n" + self.logs()
        assert figures.lost == 0 and figures.double == 0
        return figures

    async def summaries(self) -> dict[str, dict[str, Any]]:
        """Each job's tasks_summary as the gateway shows it (REST, Arvados's shape)."""
        out = {}
        async with httpx.AsyncClient(
            base_url=f"http://{self.gateway_addr}",
            headers={"Authorization": f"OAuth2 {ROOT_TOKEN}"},
            timeout=30,
        ) as http:
            for uuid in self.job_uuids:
                response = await http.get(f"/arvados/v1/jobs/{uuid}")
                assert response.status_code == 200, response.text
                out[uuid] = response.json()["tasks_summary"]
        return out


# What a cell that did not finish was left with: its unfinished tasks and, on PostgreSQL,
# every session on its database (a transaction left open holds its locks: who waits on whom).
_LEFT = """SELECT job_uuid, uuid, status, worker_id, attempt, failed_count,
    lease_expires_at, runnable_after FROM job_tasks WHERE status <> 'completed' ORDER BY id"""
# (Every one, or with `only` those whose transaction began before some time.)
_SESSIONS = """SELECT pid, pg_blocking_pids(pid) AS blocked_by, state, wait_event_type,
    wait_event, now() - xact_start AS in_transaction, now() - state_change AS in_state,
    left(query, 160) AS query FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() {only} ORDER BY pid"""


async def stuck(url: str) -> str:
    """The unfinished tasks and the database's sessions, as text (never raises: it only
    explains a failure)."""
    try:
        db = Database(url)
        try:
            async with db.read() as conn:
                lines = ["--- unfinished tasks"]
                lines += [repr(tuple(row)) for row in await conn.execute(text(_LEFT))]
                if not db.is_sqlite:
                    lines.append("--- sessions on the database")
                    sessions = await conn.execute(text(_SESSIONS.format(only="")))
                    lines += [repr(dict(row._mapping)) for row in sessions]
        finally:
            await db.dispose()
        return "\n".join(lines)
    except Exception as exc:
        return f"(the cell's state could not be read: {exc!r})"


# How old a transaction may be once every job of a cell has ended. The store's transactions
# last milliseconds, and with the work done nothing waits on a lock; a session still in one
# this long was forgotten by its process (a BEGIN canceled on its way left such a session
# running every later transaction of its connection as a savepoint inside that one).
LINGERING_SECONDS = 5.0
_LINGERING = _SESSIONS.format(only="AND xact_start < now() - make_interval(secs => :seconds)")


async def lingering_transactions(url: str, seconds: float = LINGERING_SECONDS) -> list[str]:
    """The sessions on the cell's PostgreSQL database in a transaction begun more than
    `seconds` ago (SQLite: none to ask about), each as text."""
    db = Database(url)
    try:
        if db.is_sqlite:
            return []
        async with db.read() as conn:
            rows = await conn.execute(text(_LINGERING), {"seconds": seconds})
            return [repr(dict(row._mapping)) for row in rows]
    finally:
        await db.dispose()


async def held(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def timed(fault: Callable[[], Awaitable[None]]) -> history.Fault:
    began = now()
    await fault()
    return history.Fault(began, now())


async def closing(cell: Cell) -> None:
    for w in cell.watchers:
        w.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*cell.watchers, return_exceptions=True)
