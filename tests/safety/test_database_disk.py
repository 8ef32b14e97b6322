"""The database's disk, full or read-only (issue 13, smaller items).

A full disk answers UNAVAILABLE / 503 "the database disk is full", not "the database is
unreachable"; a read-only database directory at start is one line and exit code 1, not a
traceback. Both on real file systems: small tmpfs mounts (this needs root, as the tests'
machine and CI run; elsewhere the tests skip)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from jobtask.gateway import serve_gateway

from tests.conftest import start_cluster, start_jobtask
from tests.core.helpers import create_job


def _mount(path: Path, options: str) -> Iterator[Path]:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path / "small", "size=1m")


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path / "ro", "ro")


async def test_a_full_disk_says_so(small_disk: Path) -> None:
    cluster = await start_cluster(f"sqlite:///{small_disk / 'db.sqlite3'}", lease_ttl=3.0)
    gateway = await serve_gateway("127.0.0.1:0", cluster.jobs_addr, cluster.tasks_addr)
    try:
        big = "x" * 100_000
        failed = None
        for i in range(40):  # 4 MB into a 1 MB disk
            try:
                await cluster.jobs.CreateJob(
                    create_job(
                        script="hash.py",
                        repository="a/b",
                        script_version="master",
                        script_parameters={"input": big, "n": str(i)},
                    )
                )
            except grpc.aio.AioRpcError as err:
                failed = err
                break
        assert failed is not None, "the disk never filled"
        assert failed.code() == grpc.StatusCode.UNAVAILABLE
        assert "the database disk is full" in (failed.details() or "")
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            got = await http.post(
                "/arvados/v1/jobs",
                json={
                    "job": {
                        "script": "hash.py",
                        "repository": "a/b",
                        "script_version": "master",
                        "script_parameters": {"input": big},
                    }
                },
                headers={"Authorization": f"Bearer {cluster.admin_token}"},
            )
        assert got.status_code == 503, got.text
        assert "the database disk is full" in got.json()["errors"][0]
    finally:
        await gateway.stop()
        await cluster.close()


async def test_a_read_only_database_directory_is_one_line(read_only_dir: Path) -> None:
    database = read_only_dir / "jobtask.sqlite3"
    env = {**os.environ, "JOBTASK_DATABASE_URL": str(database)}
    listen = ("--jobs-listen", "127.0.0.1:0", "--tasks-listen", "127.0.0.1:0")
    proc = await start_jobtask(
        "up",
        *listen,
        "--gateway-listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert lines == [
        f"jobtask: error: cannot write the database at {database}: "
        f"read-only file system ({read_only_dir})"
    ], lines
