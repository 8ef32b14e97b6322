"""The chaos cells on SQLite: `jobtask up` (JobService, TaskService and the gateway in one
process) and 4 workers, jobs of chaos_task, and a fault a third of the way through:
- `sqlite_kill9`: the process SIGKILLed, then started again on the same ports;
- `disk_full`: the database's filesystem (a small tmpfs the test mounts) filled up, then
  freed;
- `read_only`: the database's directory and files turned read-only, then writable again.

A read-only *remount* is what one would like for the last, but Linux refuses it (EBUSY)
while a process holds a file open for writing, as SQLite does; an ext4 remounted read-only
on error cannot go back without unmounting. So the cell takes write permission away: the
server runs without CAP_DAC_OVERRIDE (setpriv), so the file modes bind it as they bind any
unprivileged service user. Mounting needs root: without it the disk_full cell is skipped,
saying so."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.chaos.cell import FULL, HOLD, Cell, closing, held, timed
from tests.scale.conftest import Topology

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1200)]

# Without the capabilities that let root ignore file modes.
UNPRIVILEGED = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs mounted on a directory of the test's."""
    where = tmp_path / "db"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; this run is not root")
    size = "256m" if FULL else "64m"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def sqlite_cell(request: pytest.FixtureRequest, tmp_path: Path, directory: Path) -> Cell:
    url = f"sqlite:///{directory / 'jobtask.sqlite3'}"
    return Cell(request.node.name.removeprefix("test_"), Topology(url, tmp_path), url)


@pytest.fixture
async def cell(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cell]:
    directory = tmp_path / "data"
    directory.mkdir()
    c = sqlite_cell(request, tmp_path, directory)
    try:
        yield c
    finally:
        await closing(c)
        await c.topology.stop_all()


@pytest.fixture
async def tmpfs_cell(
    request: pytest.FixtureRequest, tmp_path: Path, tmpfs: Path
) -> AsyncIterator[Cell]:
    c = sqlite_cell(request, tmp_path, tmpfs)
    try:
        yield c
    finally:
        await closing(c)
        await c.topology.stop_all()


async def begin(cell: Cell, *, prefix: list[str] | None = None) -> None:
    await cell.start_up(prefix=prefix)
    await cell.submit()
    await cell.progressed(1 / 3)


async def test_sqlite_kill9(cell: Cell) -> None:
    await begin(cell)
    victim = cell.jobs[0]

    async def fault() -> None:
        await cell.kill(victim)
        await held(1.0)
        cell.restarts += 1
        await cell.spawn_up()

    window = await timed(fault)
    await cell.finish(window)
    for worker in cell.workers:
        assert worker.running, worker.log()


def fill(directory: Path) -> Path:
    """A file taking every free byte of the filesystem."""
    ballast = directory / "ballast"
    # Unbuffered: a buffered file keeps what the full disk refused and raises ENOSPC again
    # when it is closed (a flake, depending on the bytes left).
    with ballast.open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            os.posix_fallocate(f.fileno(), 0, shutil.disk_usage(directory).free)
        chunk = b"\0" * (1 << 16)
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
    return ballast


async def test_disk_full(tmpfs_cell: Cell, tmpfs: Path) -> None:
    await begin(tmpfs_cell)

    async def fault() -> None:
        ballast = await asyncio.to_thread(fill, tmpfs)
        assert shutil.disk_usage(tmpfs).free < 1 << 16
        await held(HOLD)
        ballast.unlink()

    window = await timed(fault)
    await tmpfs_cell.finish(window)
    assert all(p.running for p in tmpfs_cell.workers + tmpfs_cell.jobs)


def set_writable(directory: Path, writable: bool) -> None:
    for path in directory.iterdir():
        path.chmod(0o644 if writable else 0o444)
    directory.chmod(0o755 if writable else 0o555)


async def test_read_only(cell: Cell) -> None:
    await begin(cell, prefix=UNPRIVILEGED)
    directory = Path(cell.url.removeprefix("sqlite:///")).parent

    async def fault() -> None:
        set_writable(directory, False)
        try:
            await held(HOLD)
        finally:
            set_writable(directory, True)

    window = await timed(fault)
    await cell.finish(window)
    assert all(p.running for p in cell.workers + cell.jobs)
