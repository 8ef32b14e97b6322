"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the compose file
is valid against the Compose Specification's JSON schema (check-jsonschema's vendored copy,
offline), every command and health check it runs is a real `jobtask` command line, every
JOBTASK_* variable it or the image sets is one the code reads, and the image's COPY sources
exist. The same topology runs as plain processes in tests/scale."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # types-PyYAML is not a dependency
from jobtask.server.app import JOB_SERVICE, TASK_SERVICE

from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SOURCES = [ROOT / "services" / "jobtask", ROOT / "clients" / "python" / "jobtask"]
# Set for compose's own interpolation (`${NAME}` on the host), never inside a container.
HOST_ONLY = {"JOBTASK_WORKER_TOKEN"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def jobtask_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every `jobtask ...` the deployment runs."""
    found = []
    for name, service in services().items():
        command = service.get("command")
        if isinstance(command, str):
            command = shlex.split(command)
        if command and command[0] == "jobtask":
            found.append((f"{name}: command", command))
        test = (service.get("healthcheck") or {}).get("test")
        if test and test[0] in ("CMD", "CMD-SHELL"):
            argv = test[1:] if test[0] == "CMD" else shlex.split(test[1])
            if argv[0] == "jobtask":
                found.append((f"{name}: healthcheck", argv))
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    assert cmd is not None, "the Dockerfile has no exec-form CMD"
    found.append(("Dockerfile: CMD", yaml.safe_load(cmd.group(1))))
    return found


def run_help(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobtask.cli.main", *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_deployment_has_every_part_with_health_checks() -> None:
    parts = services()
    assert {"postgres", "migrate", "jobs", "tasks", "gateway", "worker"} <= parts.keys()
    for name in ("postgres", "jobs", "tasks", "gateway"):
        assert parts[name].get("healthcheck"), f"{name} has no health check"
    for name, service in parts.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in parts, f"{name} depends on unknown service {dependency}"
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    assert (ROOT / compose()["x-jobtask"]["build"] / "Dockerfile").is_file()


@pytest.mark.parametrize("where, argv", jobtask_commands(), ids=lambda v: str(v))
def test_every_command_is_a_real_jobtask_command(where: str, argv: list[str]) -> None:
    result = run_help(argv)
    assert result.returncode == 0, f"{where}: {' '.join(argv)}: {result.stderr}"
    if "--service" in argv:
        service = argv[argv.index("--service") + 1]
        assert service in (JOB_SERVICE, TASK_SERVICE), f"{where}: no service {service}"


def test_the_command_check_catches_a_wrong_command() -> None:
    assert run_help(["jobtask", "serve", "everything"]).returncode != 0
    assert run_help(["jobtask", "healthz", "127.0.0.1:1"]).returncode != 0


def variables_set() -> dict[str, str]:
    """Every JOBTASK_* variable set inside a container, with where it is set."""
    found = {}
    for name, service in services().items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for variable in environment:
            if variable.startswith("JOBTASK_"):
                found[variable] = f"service {name}"
    for match in re.finditer(r"^ENV\s+(.*)$", DOCKERFILE.read_text(), re.MULTILINE):
        for assignment in shlex.split(match.group(1)):
            variable = assignment.split("=", 1)[0]
            if variable.startswith("JOBTASK_"):
                found[variable] = "Dockerfile ENV"
    return found


def test_every_variable_set_is_read_by_the_code() -> None:
    code = "\n".join(
        path.read_text() for source in SOURCES for path in source.rglob("*.py") if path.is_file()
    )
    found = variables_set()
    assert "JOBTASK_DATABASE_URL" in found
    unread = {v: where for v, where in found.items() if f'"{v}"' not in code}
    assert not unread, f"set but never read by jobtask: {unread}"
    interpolated = set(re.findall(r"\$\{(JOBTASK_\w+)", COMPOSE.read_text()))
    assert interpolated - HOST_ONLY <= found.keys(), interpolated


def test_the_dockerfile_copies_what_exists_and_what_the_build_needs() -> None:
    copied: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        sources = [w for w in words[1:-1] if not w.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        copied += sources
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = [project["project"]["readme"], "pyproject.toml"]
    needed += project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    for path in needed:
        assert any(Path(path).is_relative_to(c) for c in copied), f"{path} is not copied"


def test_the_gateway_health_check_asks_readyz_which_the_gateway_serves() -> None:
    """issue 18: the check's URL is the gateway's /readyz, answered without a token (here
    503: no services listen at these addresses), and /healthz answers 200."""
    import asyncio

    import httpx
    from jobtask.gateway.server import create_app

    test = services()["gateway"]["healthcheck"]["test"]
    url = re.search(r"http://[^'\"]+", " ".join(test))
    assert url is not None and url.group(0).endswith(":8000/readyz"), test

    async def ask() -> tuple[int, int, dict[str, Any]]:
        app = create_app("127.0.0.1:1", "127.0.0.1:1")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            alive = await http.get("/healthz")
            ready = await http.get("/readyz")
        return alive.status_code, ready.status_code, ready.json()

    alive, ready, body = asyncio.run(ask())
    assert (alive, ready) == (200, 503)
    assert body["status"] == "unready"
    assert body["checks"][JOB_SERVICE] == "unreachable"


def test_every_service_exposes_metrics() -> None:
    environment = compose()["x-jobtask"]["environment"]
    assert environment["JOBTASK_METRICS_LISTEN"].endswith(":9100")
    for name in ("jobs", "tasks", "gateway"):
        assert services()[name]["environment"]["JOBTASK_METRICS_LISTEN"].endswith(":9100")


GRPC_PORTS = ROOT / "compose.grpc-ports.yml"


def test_the_grpc_ports_override_publishes_what_the_services_listen_on() -> None:
    """compose.grpc-ports.yml (issue 19): valid, names services of docker-compose.yml, and
    publishes each one's gRPC listen port on the host's loopback."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(GRPC_PORTS),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    override = yaml.safe_load(GRPC_PORTS.read_text())["services"]
    listens = {"jobs": "JOBTASK_JOBS_LISTEN", "tasks": "JOBTASK_TASKS_LISTEN"}
    assert override.keys() == listens.keys()
    for name, variable in listens.items():
        port = services()[name]["environment"][variable].rsplit(":", 1)[1]
        (published,) = override[name]["ports"]
        assert published.startswith("127.0.0.1:") and published.endswith(f":{port}")


def test_no_command_needs_the_worker_token_before_it_exists() -> None:
    """`${VAR:?}` is checked by every compose command, `docker compose run migrate jobtask
    token create --worker` (which makes the worker token) included."""
    assert "${JOBTASK_WORKER_TOKEN:?" not in COMPOSE.read_text()
