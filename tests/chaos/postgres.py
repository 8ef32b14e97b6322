"""A PostgreSQL 15 server of the chaos cells' own: restarted, its backends killed, its
connection slots taken, without touching the server other test runs share.

initdb into a fresh directory (owned by the `postgres` OS user when the tests run as root,
as PostgreSQL refuses to run as root), listening on 127.0.0.1 only, on a free port, with
trust authentication for local connections; stopped and removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs published

BIN = Path(os.environ.get("JOBTASK_CHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))
# Room for every service process's pool (tests/scale/conftest.POOL_ENV) and the test's own
# connections, and few enough that the pool_exhaustion cell can take every slot.
MAX_CONNECTIONS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnPostgres:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="jobtask-chaos-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = free_port()
        self.user = "postgres"

    def available(self) -> str | None:
        """Why this server cannot run here (None: it can)."""
        if not (BIN / "initdb").exists():
            return f"no PostgreSQL binaries in {BIN} (JOBTASK_CHAOS_PG_BIN)"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no `postgres` OS user to run PostgreSQL"
        return None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                f"max_connections = {MAX_CONNECTIONS}\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """What the services are given (SQLAlchemy with asyncpg)."""
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    async def create_database(self, name: str) -> str:
        admin = await asyncpg.connect(self.dsn())
        try:
            await admin.execute(f"CREATE DATABASE {name}")
        finally:
            await admin.close()
        return self.url(name)

    async def terminate_backends(self, database: str) -> int:
        """Kills every session on `database` but this one (pg_terminate_backend)."""
        admin = await asyncpg.connect(self.dsn())
        try:
            rows = await admin.fetch(
                """SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
                   WHERE datname = $1 AND pid <> pg_backend_pid()""",
                database,
            )
        finally:
            await admin.close()
        return sum(1 for r in rows if r["killed"])

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.logfile.read_text(errors="replace")[-3000:]
        return ""
