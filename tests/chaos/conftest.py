"""The chaos cells' fixtures: a PostgreSQL server of their own, a cell per test, and the
figures of every cell printed as a table at the end (and written to $JOBTASK_CHAOS_REPORT,
docs/reliability.md under `make chaos`)."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.chaos import history
from tests.chaos.cell import FULL, RESULTS, TASKS, Cell, closing
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    size = "full" if FULL else "short"
    text = history.table(RESULTS)
    terminalreporter.write_sep("=", f"chaos cells ({size}: {TASKS} tasks a cell)")
    terminalreporter.write_line(text)
    target = os.environ.get("JOBTASK_CHAOS_REPORT")
    if target:
        write_report(Path(target), text, size)


def write_report(path: Path, text: str, size: str) -> None:
    """Replaces the figures between the markers in docs/reliability.md."""
    begin, end = "<!-- chaos figures -->", "<!-- end chaos figures -->"
    page = path.read_text()
    head, _, rest = page.partition(begin)
    _, _, tail = rest.partition(end)
    day = dt.datetime.now(dt.UTC).date().isoformat()
    machine = f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end"
    block = f"{begin}\n_{size} run, {TASKS} tasks a cell, {day} ({machine}):_\n\n{text}\n{end}"
    path.write_text(head + block + tail)
