"""Fixtures for the client tests: a cluster with a root token, the SDK connected to it, real
worker processes (`python -m jobtask.cli.main worker`) and the real CLI as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jobtask.sdk import AsyncClient

from tests.conftest import ROOT, Cluster, running_cluster, start_jobtask

SCRIPTS = ROOT / "tests" / "scripts"
ROOT_TOKEN = "jobtask-test-root-token"
# Short leases, so a killed worker's task is reaped within about a second.
LEASE_TTL = 1.5


def cli_env(cluster: Cluster, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "JOBTASK_JOBS_ADDR": cluster.jobs_addr,
        "JOBTASK_TASKS_ADDR": cluster.tasks_addr,
        "JOBTASK_TOKEN": ROOT_TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


@pytest.fixture
async def live(database_url: str) -> AsyncIterator[Cluster]:
    """JobService and TaskService on port 0 (SQLite and PostgreSQL), short leases."""
    async with running_cluster(database_url, lease_ttl=LEASE_TTL, root_token=ROOT_TOKEN) as c:
        yield c


@pytest.fixture
async def client(live: Cluster) -> AsyncIterator[AsyncClient]:
    async with AsyncClient.connect(live.jobs_addr, live.tasks_addr, ROOT_TOKEN) as c:
        yield c


@dataclass
class WorkerProcess:
    proc: asyncio.subprocess.Process
    worker_id: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Workers:
    """Starts worker agents as real processes; kills what is left at the end of a test."""

    cluster: Cluster
    tmp_path: Path
    started: list[WorkerProcess] = field(default_factory=list)

    async def start(
        self,
        name: str,
        *,
        node: str = "node1",
        slots: int = 1,
        scripts_dir: Path = SCRIPTS,
        **env: str,
    ) -> WorkerProcess:
        log_path = self.tmp_path / f"worker-{name}.log"
        work = self.tmp_path / f"work-{name}"
        work.mkdir()
        worker_id = f"{node}-{name}"
        with log_path.open("wb") as out:
            proc = await start_jobtask(
                "worker",
                "--scripts-dir",
                str(scripts_dir),
                "--work-dir",
                str(work),
                "--node-name",
                node,
                "--worker-id",
                worker_id,
                "--slots",
                str(slots),
                "--claim-wait",
                "1",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=cli_env(self.cluster, **env),
            )
        worker = WorkerProcess(proc, worker_id, log_path)
        self.started.append(worker)
        return worker

    async def stop_all(self) -> None:
        for worker in self.started:
            if worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
                await worker.proc.wait()


@pytest.fixture
async def workers(live: Cluster, tmp_path: Path) -> AsyncIterator[Workers]:
    w = Workers(live, tmp_path)
    try:
        yield w
    finally:
        await w.stop_all()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(cluster: Cluster, *args: str, within: float = 30.0, **env: str) -> Result:
    """The real `jobtask` command as a subprocess (asyncio: the servers share our loop)."""
    proc = await start_jobtask(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(cluster, **env),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"jobtask {' '.join(args)} did not finish in {within}s:\n{out.decode()}{err.decode()}"
        ) from None
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def run_once(*args: str, **env: str) -> tuple[int, str]:
    """`jobtask <args>` to its end, with no cluster (and `env` added to the environment): its
    exit code and its stdout and stderr together."""
    proc = await start_jobtask(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GRPC_VERBOSITY": "NONE", **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


@contextlib.contextmanager
def killed_at_exit(pids: list[int]) -> Iterator[None]:
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
