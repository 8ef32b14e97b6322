"""Which flags `jobtask`'s commands take, and where on the command line: the real `jobtask`
as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pytest
from jobtask.cli import _verbosity
from jobtask.cli.servers import part_first

from tests.clients.conftest import run_once
from tests.conftest import start_jobtask

pytestmark = pytest.mark.timeout(120)


async def test_logging_flags_after_the_command_too(tmp_path: Path) -> None:
    """-v and --log-format before and after the command: the counts of -v add up (two, so
    DEBUG lines), and the later --log-format wins (json, though text came first)."""
    proc = await start_jobtask(
        "--log-format",
        "text",
        "-v",
        "up",
        "--jobs-listen",
        "127.0.0.1:0",
        "--tasks-listen",
        "127.0.0.1:0",
        "--no-gateway",
        "--log-format",
        "json",
        "-v",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "JOBTASK_DATABASE_URL": str(tmp_path / "db.sqlite3")},
        cwd=tmp_path,
    )
    assert proc.stderr is not None
    records: list[dict[str, str]] = []
    try:
        while not records or not records[-1]["event"].startswith("event loop: "):
            line = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert line.startswith(b"{"), f"not a JSON line: {line!r} after {records}"
            records.append(json.loads(line))
    finally:
        # (Killed: how it stops is not this test's.)
        proc.kill()
        await proc.communicate()
    assert any(r["level"] == "debug" for r in records), records


def test_grpc_verbosity_counts_v_after_the_command_too() -> None:
    """-vvv turns gRPC's own logging on (read before argparse runs): wherever it stands."""
    assert _verbosity(["worker", "-vvv"]) == 3
    assert _verbosity(["-v", "worker", "--log-format", "json", "-vv"]) == 3
    assert _verbosity(["--verbose", "up", "--verbose"]) == 2
    assert _verbosity(["worker", "--", "-vvv"]) == 0


SERVICE = {"--database-url", "--cluster-id", "--grpc-tls-cert", "--grpc-tls-key"}
COMMON = {"--help", "--verbose", "--log-format", "--metrics-listen"}
SCHEDULING = {
    "--retry-limit",
    "--retry-backoff-base",
    "--retry-backoff-max",
    "--blocklist-threshold",
    "--worker-retention",
    "--no-fair-share",
}
GATEWAY = {
    "--gateway-listen",
    "--gateway-header-timeout",
    "--gateway-idle-timeout",
    "--gateway-max-connections",
    "--tls-cert",
    "--tls-key",
    "--tls-ca",
}
FLAGS = {
    "jobs": COMMON | SERVICE | {"--jobs-listen", "--lease-ttl"},
    "tasks": COMMON | SERVICE | SCHEDULING | {"--tasks-listen", "--lease-ttl"},
    "gateway": COMMON | GATEWAY | {"--jobs-addr", "--tasks-addr"},
}


@pytest.mark.parametrize("part", sorted(FLAGS))
async def test_serve_parts_show_and_take_only_their_own_flags(part: str) -> None:
    code, shown = await run_once("serve", part, "--help")
    assert code == 0, shown
    assert set(re.findall(r"--[a-z][a-z-]*", shown)) == FLAGS[part], shown
    foreign = {"jobs": "--gateway-listen", "tasks": "--tls-cert", "gateway": "--database-url"}
    code, said = await run_once("serve", part, foreign[part], "x")
    assert code == 2, said
    assert f"error: unrecognized arguments: {foreign[part]} x" in said, said


async def test_up_shows_every_part_s_flags() -> None:
    code, shown = await run_once("up", "--help")
    assert code == 0, shown
    every = FLAGS["jobs"] | FLAGS["tasks"] | FLAGS["gateway"]
    expected = every - {"--jobs-addr", "--tasks-addr"} | {"--no-gateway"}
    assert set(re.findall(r"--[a-z][a-z-]*", shown)) == expected, shown


def test_a_serve_part_s_name_may_come_after_its_flags() -> None:
    """`jobtask serve --jobs-listen X jobs`, the order every deployment used until each part
    took its own flags: the part's name is moved to its place, the rest left to argparse."""
    assert part_first(["serve", "--jobs-listen", "h:1", "jobs"]) == [
        "serve",
        "jobs",
        "--jobs-listen",
        "h:1",
    ]
    assert part_first(
        ["-v", "--log-format", "json", "serve", "--lease-ttl", "5", "tasks", "-v"]
    ) == [
        "-v",
        "--log-format",
        "json",
        "serve",
        "tasks",
        "--lease-ttl",
        "5",
        "-v",
    ]
    for unchanged in (
        ["serve", "jobs", "--jobs-listen", "h:1"],
        ["serve", "--help"],
        ["up", "--jobs-listen", "h:1"],
        ["submit", "--script", "jobs"],
        ["serve", "--jobs-listen", "h:1"],
        ["serve", "--database-url", "x", "--", "jobs"],
    ):
        assert part_first(unchanged) == unchanged


async def test_serve_runs_with_its_part_after_its_flags() -> None:
    code, shown = await run_once("serve", "--lease-ttl", "5", "jobs", "--help")
    assert code == 0, shown
    assert set(re.findall(r"--[a-z][a-z-]*", shown)) == FLAGS["jobs"], shown
    code, said = await run_once("serve", "--gateway-listen", "x", "jobs")
    assert code == 2, said
    assert "error: unrecognized arguments: --gateway-listen x" in said, said
