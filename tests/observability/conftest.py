"""The split deployment as real processes (tests/scale's Topology), every part with its
Prometheus endpoint on port 0 and JSON logs on stderr (captured in the part's log file)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.scale.conftest import Part, Topology
from tests.scale.conftest import topology as topology  # the PostgreSQL one, shared

OBSERVED: dict[str, Any] = {
    "JOBTASK_METRICS_LISTEN": "127.0.0.1:0",
    "JOBTASK_LOG_FORMAT": "json",
    "JOBTASK_METRICS_CACHE_SECONDS": "0.2",
}
_METRICS_LINE = re.compile(rb"^metrics: (\S+)")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def metrics_url(part: Part) -> str:
    """Where a `jobtask serve` part's metrics are: its `metrics:` line, among the few it
    prints as it starts (its address, database and schema come first)."""
    assert part.proc.stdout is not None
    said: list[bytes] = []
    while len(said) < 8:
        line = await asyncio.wait_for(part.proc.stdout.readline(), 30)
        said.append(line)
        found = _METRICS_LINE.match(line)
        if found:
            return found.group(1).decode()
        if not line:
            break
    raise AssertionError((said, part.log()))


async def observed(topology: Topology, part: str, name: str) -> tuple[Part, str]:
    started = await topology.serve(part, name, **OBSERVED)
    return started, await metrics_url(started)


async def gateway_of(topology: Topology, jobs: Part, tasks: Part, **env: str) -> Part:
    """`jobtask serve gateway` in front of jobs and tasks, with env (OBSERVED, say)."""
    gateway = await topology._spawn(
        "gateway",
        ["serve", "gateway"],
        topology.env(
            JOBTASK_GATEWAY_LISTEN="127.0.0.1:0",
            JOBTASK_JOBS_ADDR=jobs.addr,
            JOBTASK_TASKS_ADDR=tasks.addr,
            **env,
        ),
    )
    gateway.addr = await topology._announced(gateway)
    return gateway


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient() as http:
        answer = await http.get(url, timeout=30)
    assert answer.status_code == 200, answer.text
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until_scraped(
    url: str, check: Callable[[Samples], bool], within: float = 90.0
) -> Samples:
    """Scrapes until check passes (generous deadline: the machine is shared)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        samples = await scrape(url)
        if check(samples):
            return samples
        if loop.time() > deadline:
            raise AssertionError(f"metrics never matched; last scrape: {samples}")
        await asyncio.sleep(0.2)


def json_lines(log: str) -> list[dict[str, Any]]:
    """Every line of a JSON-logging process's stderr, parsed (each must parse)."""
    out = []
    for line in log.splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


@pytest.fixture
async def sqlite_topology(tmp_path: Path) -> AsyncIterator[Topology]:
    t = Topology(f"sqlite:///{tmp_path / 'jobtask.sqlite3'}", tmp_path, lease_ttl=10.0)
    try:
        yield t
    finally:
        await t.stop_all()
