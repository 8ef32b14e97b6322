"""The split deployment as plain processes on loopback, on one PostgreSQL database: what
docker-compose.yml runs, without Docker. Every part is the real CLI (`jobtask serve jobs`,
`jobtask serve tasks`, `jobtask serve gateway`, `jobtask worker`), configured by JOBTASK_*
variables like a container, listening on port 0 and announcing its address on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, start_jobtask

SCRIPTS = ROOT / "tests" / "scripts"
ROOT_TOKEN = "jobtask-scale-root-token"
# Every service process's pool: 4 kept, 4 more under load, plus its LISTEN connection, so the
# whole topology stays far below max_connections (100) while other suites share the server.
POOL_ENV = {"JOBTASK_DB_POOL_SIZE": "4", "JOBTASK_DB_MAX_OVERFLOW": "4"}
_ANNOUNCED = re.compile(rb"^(JobService|TaskService|gateway): (?:http://)?(\S+)")


@dataclass
class Part:
    """One running process of the topology."""

    name: str
    proc: asyncio.subprocess.Process
    log_path: Path
    addr: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def running(self) -> bool:
        return self.proc.returncode is None


@dataclass
class Topology:
    database_url: str
    tmp_path: Path
    # 10 s, not less: under full CPU a report may wait seconds for its job's row lock.
    lease_ttl: float = 10.0
    parts: list[Part] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "JOBTASK_DATABASE_URL": self.database_url,
            "JOBTASK_SYSTEM_ROOT_TOKEN": ROOT_TOKEN,
            "JOBTASK_LEASE_TTL": str(self.lease_ttl),
            **POOL_ENV,
            **extra,
        }

    async def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Part:
        log_path = self.tmp_path / f"{name}.log"
        with log_path.open("wb") as log:
            proc = await start_jobtask(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=self.tmp_path,
            )
        part = Part(name, proc, log_path)
        self.parts.append(part)
        return part

    async def _announced(self, part: Part, within: float = 60.0) -> str:
        """The address the process printed once it listens."""
        assert part.proc.stdout is not None
        try:
            line = await asyncio.wait_for(part.proc.stdout.readline(), within)
        except TimeoutError:
            raise AssertionError(f"{part.name} did not start:\n{part.log()}") from None
        found = _ANNOUNCED.match(line)
        if found is None:
            await part.proc.wait()
            raise AssertionError(f"{part.name} printed {line!r}:\n{part.log()}")
        return found.group(2).decode()

    async def serve(self, part: str, name: str, *, port: int = 0, **env: str) -> Part:
        """`jobtask serve jobs|tasks` on 127.0.0.1, port 0 unless given (a restart)."""
        listen = {"jobs": "JOBTASK_JOBS_LISTEN", "tasks": "JOBTASK_TASKS_LISTEN"}[part]
        started = await self._spawn(
            name, ["serve", part], self.env(**{listen: f"127.0.0.1:{port}"}, **env)
        )
        started.addr = await self._announced(started)
        return started

    async def serve_many(self, part: str, count: int, **env: str) -> list[Part]:
        """Replicas started together (so their migrations race, too)."""
        return list(
            await asyncio.gather(
                *(self.serve(part, f"{part}{i}", port=0, **env) for i in range(count))
            )
        )

    async def gateway(self, jobs_addr: str, tasks_addr: str) -> Part:
        started = await self._spawn(
            "gateway",
            ["serve", "gateway"],
            self.env(
                JOBTASK_GATEWAY_LISTEN="127.0.0.1:0",
                JOBTASK_JOBS_ADDR=jobs_addr,
                JOBTASK_TASKS_ADDR=tasks_addr,
            ),
        )
        started.addr = await self._announced(started)
        return started

    async def worker(
        self,
        name: str,
        *,
        jobs_addr: str,
        tasks_addr: str,
        token: str,
        slots: int = 2,
        **extra: str,
    ) -> Part:
        """`jobtask worker` configured by environment, on a node of its own (claims of one
        node serialize on the node's lock, as they must for its memory limits)."""
        work = self.tmp_path / f"work-{name}"
        work.mkdir()
        env = self.env(
            JOBTASK_JOBS_ADDR=jobs_addr,
            JOBTASK_TASKS_ADDR=tasks_addr,
            JOBTASK_TOKEN=token,
            JOBTASK_WORKER_SLOTS=str(slots),
            JOBTASK_NODE_NAME=f"node-{name}",
            JOBTASK_WORKER_ID=f"node-{name}",
            JOBTASK_SCRIPTS_DIR=str(SCRIPTS),
            JOBTASK_WORK_DIR=str(work),
            **extra,
        )
        for secret in ("JOBTASK_DATABASE_URL", "JOBTASK_SYSTEM_ROOT_TOKEN"):
            del env[secret]  # a worker needs neither
        started = await self._spawn(name, ["worker", "--claim-wait", "2"], env)
        assert started.proc.stdout is not None
        line = await asyncio.wait_for(started.proc.stdout.readline(), 30)
        assert line.startswith(b"worker "), (line, started.log())
        return started

    async def cli(self, *args: str, within: float = 60.0, **env: str) -> str:
        """Runs `jobtask ARGS`; returns its stdout, failing the test on a non-zero exit."""
        proc = await start_jobtask(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(**env),
            cwd=self.tmp_path,
        )
        out, err = await asyncio.wait_for(proc.communicate(), within)
        assert proc.returncode == 0, f"jobtask {' '.join(args)}: {err.decode()}"
        return out.decode()

    async def worker_token(self) -> str:
        return (await self.cli("token", "create", "--worker")).strip()

    def kill(self, part: Part) -> None:
        part.proc.send_signal(signal.SIGKILL)

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU time of each running part (Linux /proc)."""
        ticks = os.sysconf("SC_CLK_TCK")
        out = {}
        for part in self.parts:
            try:
                stat = Path(f"/proc/{part.proc.pid}/stat").read_text().rpartition(")")[2].split()
            except FileNotFoundError:
                continue
            out[part.name] = (int(stat[11]) + int(stat[12]) + int(stat[13]) + int(stat[14])) / ticks
        return out

    async def stop_all(self) -> None:
        """SIGTERM (graceful: workers hand their tasks back), then SIGKILL what lingers."""
        print("\nCPU seconds:", {k: round(v, 1) for k, v in self.cpu_seconds().items()})
        for part in self.parts:
            if part.running:
                with contextlib.suppress(ProcessLookupError):
                    part.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for part in self.parts:
            try:
                await asyncio.wait_for(part.proc.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    part.proc.kill()
                await part.proc.wait()

    def logs(self) -> str:
        """Every part's log tail, for assertion messages."""
        return "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in self.parts)


@pytest.fixture
async def topology(postgres_url: str, tmp_path: Path) -> AsyncIterator[Topology]:
    t = Topology(postgres_url, tmp_path)
    try:
        yield t
    finally:
        await t.stop_all()
