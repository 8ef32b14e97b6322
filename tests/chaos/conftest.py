"""The chaos cells' fixtures: a PostgreSQL server of their own, a cell per test. The figures
of every cell are printed as a table at the end by tests/chaos/report.py."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.chaos.cell import Cell, closing
from tests.chaos.postgres import OwnPostgres
from tests.scale.conftest import Topology


@pytest.fixture(scope="session")
def own_postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    why = server.available()
    if why is not None:
        pytest.fail(f"the chaos cells' own PostgreSQL cannot run: {why}")
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
async def pg_cell(
    own_postgres: OwnPostgres, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Cell]:
    name = f"chaos_{secrets.token_hex(4)}"
    url = await own_postgres.create_database(name)
    cell = Cell(request.node.name.removeprefix("test_"), Topology(url, tmp_path), url)
    try:
        yield cell
    finally:
        await closing(cell)
        await cell.topology.stop_all()
