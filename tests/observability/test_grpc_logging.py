"""Issue 18: gRPC's C-core logging is off (ERROR only) by default for `jobtask`, and back
with -vvv. GRPC_TRACE makes the C core log INFO lines (`I1204 12:00:00.000000 ... ]`) on
every call; by default none reach stderr."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import start_jobtask
from tests.scale.conftest import ROOT_TOKEN

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# absl's prefix: severity, MMDD, time, thread, file:line]
C_CORE_LINE = re.compile(r"^[IDW]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]", re.MULTILINE)


async def _up_and_down(tmp_path: Path, *flags: str) -> str:
    """`jobtask [flags] up` with GRPC_TRACE set, one call, SIGINT; its stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
    env.update(
        JOBTASK_DATABASE_URL=str(tmp_path / "jobtask.sqlite3"),
        JOBTASK_SYSTEM_ROOT_TOKEN=ROOT_TOKEN,
        PYTHONUNBUFFERED="1",
        GRPC_TRACE="api",
    )
    err_path = tmp_path / f"stderr{len(flags)}.log"
    with err_path.open("wb") as err:
        proc = await start_jobtask(
            *flags,
            "up",
            "--jobs-listen",
            "127.0.0.1:0",
            "--tasks-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env=env,
            cwd=tmp_path,
        )
    try:
        assert proc.stdout is not None
        jobs_addr = None
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, err_path.read_text(errors="replace")
            if line.startswith("JobService:"):
                jobs_addr = line.split()[-1]
            if line.startswith("press Ctrl-C"):
                break
        assert jobs_addr
        async with grpc.aio.insecure_channel(jobs_addr) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return err_path.read_text(errors="replace")


async def test_up_prints_no_grpc_core_chatter_by_default(tmp_path: Path) -> None:
    quiet = await _up_and_down(tmp_path)
    assert not C_CORE_LINE.search(quiet), quiet[:3000]
    # The condition is real: asked for (-vvv), the same run logs the C core's INFO lines.
    verbose = await _up_and_down(tmp_path, "-vvv")
    assert C_CORE_LINE.search(verbose), verbose[:3000]
