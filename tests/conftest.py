"""Shared fixtures: real stores (a SQLite file, a PostgreSQL database), real servers.

PostgreSQL: JOBTASK_TEST_POSTGRES_URL names a server where the test role may create
databases (`make test` sets it and starts the server). Each test gets a fresh database cloned
from a migrated template, so tests never see each other's rows. Tests that need PostgreSQL
fail, not skip, when it is unreachable: CI always runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import grpc
import pytest
from jobtask.manager.tokens import issue_token
from jobtask.server.app import Services, serve_all
from jobtask.store import migrate
from jobtask.store.database import Database
from jobtask.v1 import job_service_pb2_grpc, task_service_pb2_grpc
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql://jobtask:jobtask@127.0.0.1:5432/jobtask_test"
# One template per pytest process: concurrent runs on one server must not drop each other's.
TEMPLATE = f"jobtask_tpl_{os.getpid()}"

# The chaos cells' table at the end of the run: a plugin, so that the process printing the
# summary under pytest-xdist (which loads no conftest below tests/) has its hooks.
pytest_plugins = ["tests.chaos.report"]


async def start_jobtask(*args: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """The real `jobtask` command (this interpreter's) as an asyncio subprocess: servers under
    test may share the test's event loop, so nothing here may block it."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobtask.cli.main", *args, **kwargs
    )


def postgres_admin_url() -> str:
    return os.environ.get("JOBTASK_TEST_POSTGRES_URL", DEFAULT_PG)


def _asyncpg_dsn(url: str, database: str) -> str:
    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


_template_ready = False


async def _ensure_template() -> None:
    global _template_ready
    if _template_ready:
        return
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url(), "postgres"))
    try:
        await _drop_stale_databases(admin)
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await admin.close()
    db = Database(_asyncpg_dsn(postgres_admin_url(), TEMPLATE))
    try:
        await migrate.upgrade(db)
    finally:
        await db.dispose()
    _template_ready = True


async def _drop_stale_databases(admin: asyncpg.Connection) -> None:
    """Templates of pytest processes that are gone (killed runs leave theirs behind)."""
    rows = await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'jobtask_tpl_%'")
    for row in rows:
        pid = int(row["datname"].rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            await admin.execute(f"DROP DATABASE IF EXISTS {row['datname']} WITH (FORCE)")
        except PermissionError:
            pass


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _template_ready:

        async def drop() -> None:
            admin = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url(), "postgres"))
            try:
                shared = [make_url(url).database for url in _shared.values()]
                for name in [*shared, TEMPLATE]:
                    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            finally:
                await admin.close()

        asyncio.run(drop())


async def create_postgres_database(name: str | None = None, *, migrated: bool = True) -> str:
    """A fresh database (a random name unless given), migrated unless told otherwise (then
    without any table); returns its SQLAlchemy URL."""
    if migrated:
        await _ensure_template()
    name = name or f"jobtask_t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url(), "postgres"))
    try:
        await admin.execute(
            f"CREATE DATABASE {name}" + (f" TEMPLATE {TEMPLATE}" if migrated else "")
        )
    finally:
        await admin.close()
    return _asyncpg_dsn(postgres_admin_url(), name)


# Databases kept for the whole run (shared_postgres_database), dropped with TEMPLATE.
_shared: dict[str, str] = {}


async def shared_postgres_database(label: str, seed: Callable[[str], Awaitable[None]]) -> str:
    """One migrated database per pytest process and label, filled by `seed(url)` the first
    time, for read-only tests whose seeding costs far more than their checks. Named like
    TEMPLATE (ending in the pid), so a killed run's is dropped as stale like it."""
    if label not in _shared:
        url = await create_postgres_database(f"jobtask_tpl_{label}_{os.getpid()}")
        await seed(url)
        _shared[label] = url
    return _shared[label]


async def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url(), "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each test using this runs twice: on a SQLite file and on a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobtask.sqlite3'}"
        return
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobtask.sqlite3'}"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture
async def empty_postgres_url() -> AsyncIterator[str]:
    """A PostgreSQL database with no tables at all (not cloned from the migrated template)."""
    url = await create_postgres_database(migrated=False)
    try:
        yield url
    finally:
        await drop_postgres_database(url)


# -- auth (issue 5): every call needs a token. The cluster's services accept ROOT_TOKEN as the
# system root token (`cluster.root_token`). The stubs start_cluster returns send a token of an
# admin user, `<cluster>-tpzed-000000000000001` (`cluster.admin_token`) -- who every call was
# before tokens existed: an admin, but not the system, which may also change locked jobs --
# unless a call brings its own `authorization` metadata (a task's token, say).
ROOT_TOKEN = "jobtask-test-root-token-" + secrets.token_hex(16)


def _with_token(metadata: Any, token: str) -> grpc.aio.Metadata:
    out = grpc.aio.Metadata(*(metadata or ()))
    if "authorization" not in out:
        out.add("authorization", f"Bearer {token}")
    return out


class _Token:
    def __init__(self, token: str) -> None:
        self.token = token

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=_with_token(details.metadata, self.token))


# One class per call kind: grpc.aio files each interceptor under the first kind it is.
class _UnaryUnary(_Token, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStream(_Token, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnary(_Token, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _StreamStream(_Token, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def token_interceptors(token: str) -> list[Any]:
    """Client interceptors adding `authorization: Bearer <token>` to every call without one."""
    return [cls(token) for cls in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


def token_channel(target: str, token: str | None) -> grpc.aio.Channel:
    """A channel whose calls carry `token` (none: calls go unauthenticated)."""
    if token is None:
        return grpc.aio.insecure_channel(target)
    return grpc.aio.insecure_channel(target, interceptors=token_interceptors(token))


@dataclass
class Cluster:
    """Running services and stubs connected to them (the stubs send `admin_token`)."""

    services: Services
    jobs: job_service_pb2_grpc.JobServiceStub
    tasks: task_service_pb2_grpc.TaskServiceStub
    channels: list[grpc.aio.Channel]
    root_token: str | None = ROOT_TOKEN
    admin_token: str = ""

    @property
    def jobs_addr(self) -> str:
        return f"127.0.0.1:{self.services.jobs_port}"

    @property
    def tasks_addr(self) -> str:
        return f"127.0.0.1:{self.services.tasks_port}"

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close(None)
        await self.services.stop(0.5)


@contextlib.asynccontextmanager
async def running_cluster(database_url: str, **options: Any) -> AsyncIterator[Cluster]:
    """start_cluster's services for the block (a fixture's body), closed when it ends."""
    c = await start_cluster(database_url, **options)
    try:
        yield c
    finally:
        await c.close()


async def start_cluster(database_url: str, **options: Any) -> Cluster:
    """Services on `database_url`. Tests that retry a task at once run without the server's
    default retry backoff (1 s); the backoff tests (tests/scheduling) ask for theirs."""
    root_token = options.pop("root_token", ROOT_TOKEN)
    options.setdefault("retry_backoff_base", 0.0)
    services = await serve_all(database_url, root_token=root_token, **options)
    settings = services.core.settings
    _, admin_token = await issue_token(
        services.core.db,
        settings,
        user_uuid=f"{settings.cluster_id}-tpzed-000000000000001",
        is_admin=True,
    )
    jobs_channel = token_channel(f"127.0.0.1:{services.jobs_port}", admin_token)
    tasks_channel = token_channel(f"127.0.0.1:{services.tasks_port}", admin_token)
    return Cluster(
        services=services,
        jobs=job_service_pb2_grpc.JobServiceStub(jobs_channel),
        tasks=task_service_pb2_grpc.TaskServiceStub(tasks_channel),
        channels=[jobs_channel, tasks_channel],
        root_token=root_token,
        admin_token=admin_token,
    )


@pytest.fixture
async def cluster(database_url: str) -> AsyncIterator[Cluster]:
    """JobService and TaskService on port 0, on SQLite and on PostgreSQL."""
    async with running_cluster(database_url, lease_ttl=3.0) as c:
        yield c


@pytest.fixture
def python() -> str:
    return sys.executable
