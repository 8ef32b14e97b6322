"""Real services (SQLite and PostgreSQL) with scheduling settings, real worker processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jobtask.sdk import AsyncClient

from tests.clients.conftest import LEASE_TTL, ROOT_TOKEN, Workers
from tests.conftest import Cluster, running_cluster


@pytest.fixture
def options() -> dict[str, Any]:
    """start_cluster options; a test module overrides this fixture for its own."""
    return {}


@pytest.fixture
async def live(database_url: str, options: dict[str, Any]) -> AsyncIterator[Cluster]:
    # (A test may give its own lease_ttl among its options.)
    settings = {"lease_ttl": LEASE_TTL, **options}
    async with running_cluster(database_url, root_token=ROOT_TOKEN, **settings) as c:
        yield c


@pytest.fixture
async def client(live: Cluster) -> AsyncIterator[AsyncClient]:
    async with AsyncClient.connect(live.jobs_addr, live.tasks_addr, ROOT_TOKEN) as c:
        yield c


@pytest.fixture
async def workers(live: Cluster, tmp_path: Path) -> AsyncIterator[Workers]:
    w = Workers(live, tmp_path)
    try:
        yield w
    finally:
        await w.stop_all()
