"""Issue 18: two TaskService replicas on PostgreSQL. The store-read gauges agree between
them (one served the worker, the other nothing); the per-process counters add up."""

from __future__ import annotations

import asyncio

import pytest
from jobtask.sdk import AsyncClient

from tests.observability.conftest import observed, scrape, until_scraped, value
from tests.scale.conftest import ROOT_TOKEN, Topology

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

STORE_GAUGES = ("jobtask_jobs", "jobtask_tasks", "jobtask_queue_size", "jobtask_runnable_tasks")


async def test_replicas_report_the_same_store_gauges(topology: Topology) -> None:
    (jobs, _j), (busy, busy_metrics), (_, idle_metrics) = await asyncio.gather(
        observed(topology, "jobs", "jobs"),
        observed(topology, "tasks", "tasks0"),
        observed(topology, "tasks", "tasks1"),
    )
    token = await topology.worker_token()
    await topology.worker("w1", jobs_addr=jobs.addr, tasks_addr=busy.addr, token=token)
    gate = topology.tmp_path / "gate"
    async with AsyncClient.connect(jobs.addr, busy.addr, ROOT_TOKEN) as client:
        await client.submit("gated.py", {"gate": str(gate)})

    def running(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> bool:
        return value(samples, "jobtask_tasks", status="active") == 1

    # The idle replica sees the running task too: it reads the store, not its own calls.
    await until_scraped(busy_metrics, running)
    idle_running = await until_scraped(idle_metrics, running)
    assert value(idle_running, "jobtask_tasks_claimed_total") == 0
    assert value(idle_running, "jobtask_jobs", status="active") == 1

    gate.touch()

    def done(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> bool:
        return value(samples, "jobtask_jobs", status="completed") == 1

    await until_scraped(busy_metrics, done)
    await until_scraped(idle_metrics, done)
    busy_done, idle_done = await asyncio.gather(scrape(busy_metrics), scrape(idle_metrics))
    for name in STORE_GAUGES:
        mine = {k: v for k, v in busy_done.items() if k[0] == name}
        theirs = {k: v for k, v in idle_done.items() if k[0] == name}
        assert mine == theirs, name
    assert value(idle_done, "jobtask_tasks", status="completed") == 1
    finished = "jobtask_tasks_finished_total"
    assert value(busy_done, finished, status="completed") == 1
    assert value(idle_done, finished, status="completed") == 0
    assert value(busy_done, "jobtask_db_pool_connections", state="open") >= 1
