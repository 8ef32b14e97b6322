"""Which metrics, and which label values, each kind of process exports: only what it can
count (a series that cannot move is a false zero on a dashboard)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from jobtask.observability import metrics
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from tests.observability.conftest import (
    OBSERVED,
    Samples,
    gateway_of,
    metrics_url,
    observed,
    scrape,
)
from tests.scale.conftest import Topology

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for (sample, labels), _ in samples.items() if sample == name}


async def test_tasks_finished_is_labelled_by_the_statuses_an_attempt_ends_in(
    sqlite_topology: Topology,
) -> None:
    """Never `active` (nor `queued`, `canceled`): an ended attempt's task is not active."""
    _, url = await observed(sqlite_topology, "tasks", "tasks")
    samples = await scrape(url)
    assert label_values(samples, "jobtask_tasks_finished_total", "status") == {
        "completed",
        "soft-failed",
        "failed",
        "paused",
    }


# Each part's own metric families (besides the store gauges, process_* and python_*).
SERVICES = {
    "jobtask_jobs_finished",
    "jobtask_tokens_refused",
    "jobtask_open_streams",
    "jobtask_watch_events",
    "jobtask_watch_messages",
    "jobtask_rpcs",
    "jobtask_rpc_seconds",
    "jobtask_db_transaction_seconds",
}
TASKS_ONLY = {
    "jobtask_tasks_claimed",
    "jobtask_tasks_finished",
    "jobtask_task_retries",
    "jobtask_task_permanent_failures",
    "jobtask_leases_expired",
    "jobtask_dispatch_seconds",
    "jobtask_task_run_seconds",
    "jobtask_worker_free_slots",
    "jobtask_silent_worker_sessions",
}
STORE = {
    "jobtask_store_up",
    "jobtask_jobs",
    "jobtask_tasks",
    "jobtask_queue_size",
    "jobtask_runnable_tasks",
    "jobtask_live_workers",
    "jobtask_feed_head",
    "jobtask_feed_lag_events",
}
GATEWAY = {"jobtask_http_requests", "jobtask_http_seconds"}
JOBS = SERVICES | STORE | {"jobtask_jobs_submitted"}
TASKS = SERVICES | STORE | TASKS_ONLY


async def exported(url: str) -> tuple[set[str], set[str]]:
    """The jobtask_* metric families a /metrics shows, and its open streams' kinds (and
    that it shows the process's own)."""
    async with httpx.AsyncClient() as http:
        answer = await http.get(url, timeout=30)
    assert answer.status_code == 200, answer.text
    families = list(text_string_to_metric_families(answer.text))
    names = {f.name for f in families}
    assert {"process_cpu_seconds", "python_info"} <= names, names
    kinds = {
        s.labels["kind"] for f in families if f.name == "jobtask_open_streams" for s in f.samples
    }
    # (Each counter's and histogram's creation time reads as a gauge family of its own.)
    ours = {n for n in names if n.startswith("jobtask_") and not n.endswith("_created")}
    return ours, kinds


async def up_metrics(topology: Topology) -> str:
    """`jobtask up` (all parts in one process) with its metrics: their URL."""
    listen = {f"JOBTASK_{p}_LISTEN": "127.0.0.1:0" for p in ("JOBS", "TASKS", "GATEWAY")}
    up = await topology._spawn("up", ["up"], topology.env(**listen, **OBSERVED))
    assert up.proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(up.proc.stdout.readline(), 60)).decode()
        assert line, f"jobtask up exited:\n{up.log()}"
        if line.startswith("metrics:"):
            return line.split()[-1]


async def test_each_process_exports_the_metrics_of_its_own_parts(
    sqlite_topology: Topology,
) -> None:
    """The gateway's /metrics shows no service counter (nothing there moves them), a
    JobService's none of TaskService's, and `jobtask up` all of them."""
    topology = sqlite_topology
    (jobs, jobs_url), (tasks, tasks_url) = await asyncio.gather(
        observed(topology, "jobs", "jobs"), observed(topology, "tasks", "tasks")
    )
    gateway = await gateway_of(topology, jobs, tasks, **OBSERVED)
    gateway_url = await metrics_url(gateway)
    up_url = await up_metrics(topology)
    assert await exported(gateway_url) == (GATEWAY, set())
    assert await exported(jobs_url) == (JOBS, {"watch"})
    assert await exported(tasks_url) == (TASKS, {"run", "session", "watch"})
    assert await exported(up_url) == (JOBS | TASKS | GATEWAY, {"run", "session", "watch"})


def test_every_metric_is_counted_by_some_part() -> None:
    """A metric missing from COUNTED_BY would be on no /metrics at all."""
    declared = {
        id(value) for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)
    }
    counted = {id(metric) for part in metrics.COUNTED_BY.values() for metric in part}
    assert declared == counted
