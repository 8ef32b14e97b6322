"""The real Arvados Python SDK (arvados-python-client 2.7.4) against a real stack.

The SDK lives in its own virtualenv (scripts/arvados_sdk_venv.sh builds it; it pins
protobuf < 4, so it can never share .venv) and is driven by small programs run with that
virtualenv's python as subprocesses. The SDK always fetches discovery over HTTPS, so the
gateway here serves HTTPS with a certificate made for the session, and the programs run with
ARVADOS_API_HOST_INSECURE=1, as the issue asks.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from jobtask.gateway import GatewayServer
from jobtask.server.app import Services
from jobtask.v1 import job_service_pb2_grpc, task_service_pb2_grpc

from tests.conftest import ROOT, token_channel
from tests.gateway.conftest import ROOT_TOKEN, start_stack
from tests.tls import self_signed

VENV_SCRIPT = ROOT / "scripts" / "arvados_sdk_venv.sh"
# The first build in CI downloads and compiles (pycurl); later runs reuse the virtualenv.
VENV_BUILD_TIMEOUT = 900
PROGRAM_TIMEOUT = 120.0

# Every program starts so: the SDK configured from the environment, JSON out on stdout.
PRELUDE = """\
import json, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
import arvados, arvados.errors, arvados.util
api = arvados.api("v1")

def emit(value):
    sys.stdout.write("RESULT " + json.dumps(value) + "\\n")

def api_error(call):
    try:
        call.execute()
    except arvados.errors.ApiError as err:
        return {
            "type": type(err).__name__,
            "status": err.resp.status,
            "text": str(err),
            "body": json.loads(err.content),
        }
    raise AssertionError("the call succeeded")
"""


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The Arvados SDK virtualenv's python (built on first use, ~1 min)."""
    done = subprocess.run(
        ["bash", str(VENV_SCRIPT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=VENV_BUILD_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"{VENV_SCRIPT.name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    python = Path(done.stdout.strip().splitlines()[-1])
    assert python.is_file(), done.stdout
    return python


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made for this session."""
    return self_signed(tmp_path_factory.mktemp("tls"))


class SdkError(AssertionError):
    """An SDK program failed; the message carries its output."""


@dataclass
class SdkStack:
    """Services and an HTTPS gateway, gRPC stubs for checking, and a runner of SDK programs."""

    services: Services
    gateway: GatewayServer
    python: Path
    home: Path
    jobs: job_service_pb2_grpc.JobServiceStub
    tasks: task_service_pb2_grpc.TaskServiceStub
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @property
    def api_host(self) -> str:
        """What ARVADOS_API_HOST is: host and port, no scheme (the SDK adds https://)."""
        return f"127.0.0.1:{self.gateway.port}"

    def sdk_env(self, token: str = ROOT_TOKEN) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            # The SDK caches discovery under ~/.cache/arvados: a fresh home per test.
            "HOME": str(self.home),
            "ARVADOS_API_HOST": self.api_host,
            "ARVADOS_API_TOKEN": token,
            "ARVADOS_API_HOST_INSECURE": "1",
        }

    async def run(self, body: str, *, token: str = ROOT_TOKEN) -> Any:
        """Runs PRELUDE + `body` with the SDK's python; returns what it `emit`ted."""
        proc = await asyncio.create_subprocess_exec(
            str(self.python),
            "-c",
            PRELUDE + body,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.sdk_env(token),
            cwd=self.home,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), PROGRAM_TIMEOUT)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            raise SdkError(f"SDK program timed out:\n{out.decode()}\n{err.decode()}") from None
        text = out.decode()
        if proc.returncode != 0:
            raise SdkError(f"SDK program exited {proc.returncode}:\n{text}\n{err.decode()}")
        results = [
            json.loads(line.removeprefix("RESULT "))
            for line in text.splitlines()
            if line.startswith("RESULT ")
        ]
        if len(results) != 1:
            raise SdkError(f"expected one RESULT line:\n{text}\n{err.decode()}")
        return results[0]


@pytest.fixture
async def sdk_stack(
    sdk_python: Path, tls_files: tuple[Path, Path], tmp_path: Path
) -> AsyncIterator[SdkStack]:
    """serve_all on a SQLite file (root token ROOT_TOKEN) and the gateway over HTTPS."""
    cert, key = tls_files
    services, gateway = await start_stack(tmp_path, tls_cert=str(cert), tls_key=str(key))
    assert gateway.url.startswith("https://")
    home = tmp_path / "home"
    home.mkdir()
    jobs_channel = token_channel(f"127.0.0.1:{services.jobs_port}", ROOT_TOKEN)
    tasks_channel = token_channel(f"127.0.0.1:{services.tasks_port}", ROOT_TOKEN)
    stack = SdkStack(
        services=services,
        gateway=gateway,
        python=sdk_python,
        home=home,
        jobs=job_service_pb2_grpc.JobServiceStub(jobs_channel),
        tasks=task_service_pb2_grpc.TaskServiceStub(tasks_channel),
        channels=[jobs_channel, tasks_channel],
    )
    try:
        yield stack
    finally:
        for channel in stack.channels:
            await channel.close(None)
        await gateway.stop()
        await services.stop(0.5)
