"""Shared fixtures: real stores (a SQLite file, a PostgreSQL database), real servers.

PostgreSQL: JOBTASK_TEST_POSTGRES_URL names a server where the test role may create
databases (`make test` sets it and starts the server). Each test gets a fresh database cloned
from a migrated template, so tests never see each other's rows. Tests that need PostgreSQL
fail, not skip, when it is unreachable: CI always runs them.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from jobtask.server.app import Services, serve_all
from jobtask.store import migrate
from jobtask.store.database import Database
from jobtask.v1 import job_service_pb2_grpc, task_service_pb2_grpc
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql://jobtask:jobtask@127.0.0.1:5432/jobtask_test"
TEMPLATE = "jobtask_template"


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


async def create_postgres_database() -> str:
    """A fresh, migrated database; returns its SQLAlchemy URL."""
    await _ensure_template()
    name = f"jobtask_t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url(), "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await admin.close()
    return _asyncpg_dsn(postgres_admin_url(), name)


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


@dataclass
class Cluster:
    """Running services and stubs connected to them."""

    services: Services
    jobs: job_service_pb2_grpc.JobServiceStub
    tasks: task_service_pb2_grpc.TaskServiceStub
    channels: list[grpc.aio.Channel]

    @property
    def jobs_addr(self) -> str:
        return f"127.0.0.1:{self.services.jobs_port}"

    @property
    def tasks_addr(self) -> str:
        return f"127.0.0.1:{self.services.tasks_port}"

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
        await self.services.stop(0.5)


async def start_cluster(database_url: str, **options: Any) -> Cluster:
    services = await serve_all(database_url, **options)
    jobs_channel = grpc.aio.insecure_channel(f"127.0.0.1:{services.jobs_port}")
    tasks_channel = grpc.aio.insecure_channel(f"127.0.0.1:{services.tasks_port}")
    return Cluster(
        services=services,
        jobs=job_service_pb2_grpc.JobServiceStub(jobs_channel),
        tasks=task_service_pb2_grpc.TaskServiceStub(tasks_channel),
        channels=[jobs_channel, tasks_channel],
    )


@pytest.fixture
async def cluster(database_url: str) -> AsyncIterator[Cluster]:
    """JobService and TaskService on port 0, on SQLite and on PostgreSQL."""
    c = await start_cluster(database_url, lease_ttl=3.0)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def python() -> str:
    return sys.executable
