"""Fixtures for the polyglot tests: the TypeScript package installed with `npm ci` from its
lockfile and built (its unit tests, test/, with it), a real `jobtask up` (a subprocess on a
temporary SQLite file, free ports, JOBTASK_SYSTEM_ROOT_TOKEN set), and Node and Python worker
processes against it.

The package is installed and built in a private copy (package.json, package-lock.json,
tsconfig.json, src/, examples/, test/), so every session proves that a fresh `npm ci && npm run
build` works from the lockfile, without touching clients/typescript/node_modules, which other
processes (buf, scripts/gen_protos.py) may be using meanwhile. `--prefer-offline` lets npm
answer from its cache, which the proto checks' own `npm ci` has filled by then in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jobtask.sdk import AsyncClient

ROOT = Path(__file__).resolve().parent.parent.parent
TS_PACKAGE = ROOT / "clients" / "typescript"
SCRIPTS = Path(__file__).resolve().parent / "scripts"
ROOT_TOKEN = "jobtask-polyglot-root-token"
# Short leases: heartbeats (every ttl/3 = 1 s) must keep a silent task alive. Not shorter: on
# a loaded 2-core CI machine a 1.5 s lease expired between heartbeats.
LEASE_TTL = 3.0
PACKAGE_FILES = ("package.json", "package-lock.json", "tsconfig.json")
PACKAGE_DIRS = ("src", "examples", "test")


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class NodeBuild:
    """The built package: `node <dir>/dist/examples/*.js`."""

    dir: Path
    node: str

    @property
    def worker_js(self) -> Path:
        return self.dir / "dist" / "examples" / "worker.js"

    @property
    def submit_js(self) -> Path:
        return self.dir / "dist" / "examples" / "submit.js"


@pytest.fixture(scope="session")
def node_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeBuild]:
    """`npm ci` from the lockfile, then `npm run build` (tsc: type-checks, writes dist/)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node is not None and npm is not None, "Node.js 20+ with npm is needed"
    package = tmp_path_factory.mktemp("typescript") / "typescript"
    package.mkdir()
    for name in PACKAGE_FILES:
        shutil.copy2(TS_PACKAGE / name, package / name)
    for name in PACKAGE_DIRS:
        shutil.copytree(TS_PACKAGE / name, package / name)
    started = time.monotonic()
    ci = _run([npm, "ci", "--prefer-offline", "--no-audit", "--no-fund"], package)
    assert ci.returncode == 0, f"npm ci failed:\n{ci.stdout}{ci.stderr}"
    build = _run([npm, "run", "build"], package)
    assert build.returncode == 0, f"npm run build failed:\n{build.stdout}{build.stderr}"
    print(f"npm ci and build: {time.monotonic() - started:.1f}s", file=sys.stderr)
    yield NodeBuild(package, node)
    # 150 MB, mostly buf's binary: not worth keeping among pytest's retained temp dirs.
    shutil.rmtree(package / "node_modules", ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def jobtask_command() -> list[str]:
    """The `jobtask` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "jobtask"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobtask.cli.main"]


@dataclass
class Cluster:
    """A running `jobtask up`."""

    proc: subprocess.Popen[bytes]
    database_url: str
    jobs_addr: str
    tasks_addr: str
    log_path: Path
    worker_token: str = ""

    def env(self, token: str, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "JOBTASK_JOBS_ADDR": self.jobs_addr,
            "JOBTASK_TASKS_ADDR": self.tasks_addr,
            "JOBTASK_TOKEN": token,
            "PYTHONUNBUFFERED": "1",
        }
        env.update(extra)
        return env

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_up(
    base: Path,
    database_url: str,
    jobs: str,
    tasks: str,
    *,
    gateway: str | None = None,
    lease_ttl: float = LEASE_TTL,
    log_name: str = "jobtask-up.log",
) -> Cluster:
    """`jobtask up` on the given addresses (no gateway without one), once it serves."""
    log_path = base / log_name
    env = {**os.environ, "JOBTASK_SYSTEM_ROOT_TOKEN": ROOT_TOKEN, "PYTHONUNBUFFERED": "1"}
    listen = ["--gateway-listen", gateway] if gateway else ["--no-gateway"]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [
                *jobtask_command(),
                "up",
                "--database-url",
                database_url,
                "--jobs-listen",
                jobs,
                "--tasks-listen",
                tasks,
                *listen,
                "--lease-ttl",
                str(lease_ttl),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=base,
        )
    c = Cluster(proc, database_url, jobs, tasks, log_path)
    try:
        deadline = time.monotonic() + 30
        while "press Ctrl-C to stop" not in c.log():
            assert proc.poll() is None, f"jobtask up exited:\n{c.log()}"
            assert time.monotonic() < deadline, f"jobtask up did not start:\n{c.log()}"
            time.sleep(0.05)
        assert f"JobService:  {jobs}" in c.log(), c.log()
    except BaseException:
        stop_up(c)
        raise
    return c


def stop_up(c: Cluster) -> None:
    """Stops `jobtask up` gracefully (SIGINT), killing it if it lingers."""
    if c.proc.poll() is not None:
        return
    c.proc.send_signal(signal.SIGCONT)  # in case a test paused it
    c.proc.send_signal(signal.SIGINT)
    try:
        c.proc.wait(10)
    except subprocess.TimeoutExpired:
        c.proc.kill()
        c.proc.wait()


def worker_token(c: Cluster, base: Path) -> str:
    token = _run(
        [*jobtask_command(), "token", "create", "--worker", "--database-url", c.database_url],
        base,
        timeout=60,
    )
    assert token.returncode == 0, token.stderr
    return token.stdout.strip()


def own_up(base: Path, lease_ttl: float) -> Cluster:
    """A `jobtask up` of a test's own (on `base`), with a worker token."""
    up = start_up(
        base,
        f"sqlite:///{base / 'jobtask.sqlite3'}",
        f"127.0.0.1:{free_port()}",
        f"127.0.0.1:{free_port()}",
        lease_ttl=lease_ttl,
    )
    up.worker_token = worker_token(up, base)
    return up


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("cluster")
    database_url = f"sqlite:///{base / 'jobtask.sqlite3'}"
    jobs, tasks, gateway = (f"127.0.0.1:{free_port()}" for _ in range(3))
    c = start_up(base, database_url, jobs, tasks, gateway=gateway)
    try:
        c.worker_token = worker_token(c, base)
        yield c
    finally:
        stop_up(c)


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[AsyncClient]:
    """The Python SDK, as the cluster's admin."""
    async with AsyncClient.connect(cluster.jobs_addr, cluster.tasks_addr, ROOT_TOKEN) as c:
        yield c


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    worker_id: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait(self, within: float = 30.0) -> int:
        deadline = time.monotonic() + within
        while (code := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not exit within {within}s:\n{self.log()}")
            await asyncio.sleep(0.05)
        return code


@dataclass
class Processes:
    """Starts Node and Python workers (and the Node submitter) as real processes; stops
    what is left at the end of the test (SIGTERM, then SIGKILL)."""

    cluster: Cluster
    build: NodeBuild
    tmp_path: Path
    started: list[Process] = field(default_factory=list)

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> Process:
        log_path = self.tmp_path / f"{name}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.tmp_path,
            )
        process = Process(name, proc, log_path)
        self.started.append(process)
        return process

    def node_worker(
        self,
        name: str,
        *,
        node: str = "node-js",
        slots: int = 1,
        protocol: str = "session",
        **extra: str,
    ) -> Process:
        """The Node worker example; `protocol`: session (WorkerSession) or stream
        (ClaimTask and a RunTask stream per task)."""
        worker_id = f"{node}-{name}"
        env = self.cluster.env(
            self.cluster.worker_token,
            JOBTASK_SCRIPTS_DIR=str(SCRIPTS),
            JOBTASK_NODE_NAME=node,
            JOBTASK_WORKER_SLOTS=str(slots),
            JOBTASK_WORKER_ID=worker_id,
            JOBTASK_WORK_DIR=str(self.tmp_path),
            JOBTASK_CLAIM_WAIT="1",
            # *.py scripts run under this interpreter: the jobtask SDK is importable.
            JOBTASK_PYTHON=sys.executable,
            JOBTASK_WORKER_PROTOCOL=protocol,
            **extra,
        )
        process = self._start(name, [self.build.node, str(self.build.worker_js)], env)
        process.worker_id = worker_id
        return process

    def python_worker(self, name: str, *, node: str = "node-py", slots: int = 1) -> Process:
        worker_id = f"{node}-{name}"
        work = self.tmp_path / f"work-{name}"
        work.mkdir()
        args = [
            *jobtask_command(),
            "worker",
            "--scripts-dir",
            str(SCRIPTS),
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
        ]
        process = self._start(name, args, self.cluster.env(self.cluster.worker_token))
        process.worker_id = worker_id
        return process

    def node_submit(self, name: str, *args: str) -> Process:
        return self._start(
            name,
            [self.build.node, str(self.build.submit_js), *args],
            self.cluster.env(ROOT_TOKEN),
        )

    async def stop_all(self) -> None:
        for process in self.started:
            if process.proc.poll() is None:
                process.proc.terminate()
        deadline = time.monotonic() + 10
        for process in self.started:
            with contextlib.suppress(AssertionError):
                await process.wait(max(0.0, deadline - time.monotonic()))
            if process.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.proc.kill()
                process.proc.wait()


@pytest.fixture
async def processes(
    cluster: Cluster, node_build: NodeBuild, tmp_path: Path
) -> AsyncIterator[Processes]:
    p = Processes(cluster, node_build, tmp_path)
    try:
        yield p
    finally:
        await p.stop_all()
