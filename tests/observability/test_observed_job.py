"""Issue 18: one job through the split deployment (SQLite), every part a real process with
metrics and JSON logs: the metrics move as the job does, the logs tell its story in order,
the request id set at the gateway reaches the service's log, a refused token is logged once
and no token the test made appears in any log."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
import pytest
from jobtask.sdk import AsyncClient
from jobtask.v1 import job_service_pb2, job_service_pb2_grpc

from tests.conftest import token_channel
from tests.observability.conftest import (
    OBSERVED,
    gateway_of,
    json_lines,
    metrics_url,
    observed,
    scrape,
    until_scraped,
    value,
)
from tests.scale.conftest import ROOT_TOKEN, Topology

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

STORY = [
    ("job_submitted", None),
    ("task_claimed", None),
    ("job_status", "active"),
    ("task_started", None),
    ("task_finished", None),
    ("job_finished", "completed"),
]

RUN_TASK = "/jobtask.v1.TaskService/RunTask"


def events_of(lines: list[dict[str, Any]], job_uuid: str) -> list[tuple[str, str | None]]:
    """The job's lifecycle lines (task_started names only the task)."""
    tasks = {line.get("task_uuid") for line in lines if line.get("job_uuid") == job_uuid} - {None}
    return [
        (line["event"], line.get("status"))
        for line in lines
        if line.get("logger") == "jobtask.events"
        and (line.get("job_uuid") == job_uuid or line.get("task_uuid") in tasks)
    ]


async def test_a_job_seen_through_metrics_and_logs(sqlite_topology: Topology) -> None:
    topology = sqlite_topology
    (jobs, jobs_metrics), (tasks, tasks_metrics) = await asyncio.gather(
        observed(topology, "jobs", "jobs"), observed(topology, "tasks", "tasks")
    )
    gateway = await gateway_of(topology, jobs, tasks, **OBSERVED)
    gateway_metrics = await metrics_url(gateway)
    worker_token = await topology.worker_token()
    # RunTask's own metrics are observed here: the worker keeps a stream per task.
    await topology.worker(
        "w1",
        jobs_addr=jobs.addr,
        tasks_addr=tasks.addr,
        token=worker_token,
        JOBTASK_WORKER_PROTOCOL="stream",
    )
    gate = topology.tmp_path / "gate"

    async with AsyncClient.connect(jobs.addr, tasks.addr, ROOT_TOKEN) as client:
        job = await client.submit("gated.py", {"gate": str(gate)})
    # Submitted, then running: the store gauges of the TaskService process show it.
    await until_scraped(jobs_metrics, lambda s: value(s, "jobtask_jobs_submitted_total") == 1)
    running = await until_scraped(
        tasks_metrics,
        lambda s: (
            value(s, "jobtask_tasks", status="active") == 1
            and value(s, "jobtask_open_streams", kind="run") == 1
        ),
    )
    assert value(running, "jobtask_jobs", status="active") == 1
    assert value(running, "jobtask_tasks_claimed_total") == 1
    assert value(running, "jobtask_dispatch_seconds_count") == 1
    assert value(running, "jobtask_live_workers") >= 1
    assert value(running, "jobtask_queue_size") == 0

    # The REST gateway: a request id of ours comes back and reaches JobService's log.
    async with httpx.AsyncClient(base_url=f"http://{gateway.addr}") as http:
        answer = await http.get(
            f"/arvados/v1/jobs/{job.uuid}",
            headers={"Authorization": f"OAuth2 {ROOT_TOKEN}", "X-Request-Id": "req-observe1"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-request-id"] == "req-observe1"
        generated = await http.get("/arvados/v1/jobs", params={"api_token": ROOT_TOKEN})
        assert generated.headers["x-request-id"].startswith("req-")

    # A misconfigured client retrying with a wrong token: refused each time, logged once.
    bad_token = "not-a-real-token-0123456789"
    channel = token_channel(jobs.addr, bad_token)
    try:
        stub: Any = job_service_pb2_grpc.JobServiceStub(channel)
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetJob(job_service_pb2.GetJobRequest(uuid=job.uuid))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await channel.close(None)

    gate.touch()
    done = await until_scraped(
        tasks_metrics,
        lambda s: (
            value(s, "jobtask_jobs", status="completed") == 1
            and value(s, "jobtask_open_streams", kind="run") == 0
            # The access interceptor counts the RPC once its handler returned, just after
            # the stream's own gauge dropped: a scrape can fall in between.
            and value(s, "jobtask_rpcs_total", method=RUN_TASK, code="OK") >= 1
        ),
    )
    assert value(done, "jobtask_tasks", status="completed") == 1
    assert value(done, "jobtask_tasks", status="active") == 0
    assert value(done, "jobtask_tasks_finished_total", status="completed") == 1
    assert value(done, "jobtask_task_run_seconds_count") == 1
    assert value(done, "jobtask_jobs_finished_total", status="completed") == 1
    assert value(done, "jobtask_rpcs_total", method=RUN_TASK, code="OK")
    assert value(done, "jobtask_db_transaction_seconds_count") > 0
    assert value(done, "jobtask_store_up") == 1
    jobs_samples = await scrape(jobs_metrics)
    assert value(jobs_samples, "jobtask_tokens_refused_total") == 5
    gateway_samples = await scrape(gateway_metrics)
    assert value(
        gateway_samples,
        "jobtask_http_requests_total",
        route="/arvados/v1/jobs/{uuid}",
        status="200",
    )

    await topology.stop_all()
    service_lines = json_lines(jobs.log()) + json_lines(tasks.log())
    # The story, in order (the services write to separate logs: order by time).
    service_lines.sort(key=lambda line: line["time"])
    assert events_of(service_lines, job.uuid) == STORY, events_of(service_lines, job.uuid)
    finished = next(line for line in service_lines if line["event"] == "task_finished")
    assert finished["outcome"] == "completed"
    assert finished["worker"] == "node-w1"
    assert {"time", "level", "logger", "task_uuid", "attempt"} <= finished.keys()

    jobs_lines = json_lines(jobs.log())
    forwarded = [line for line in jobs_lines if line.get("request_id") == "req-observe1"]
    assert any(
        line["logger"] == "jobtask.access"
        and line["method"].endswith("/GetJob")
        and line["code"] == "OK"
        and line["caller_uuid"].endswith("-tpzed-000000000000000")
        for line in forwarded
    ), jobs_lines
    refusals = [line for line in jobs_lines if line["event"].startswith("refused a call")]
    assert len(refusals) == 1, refusals
    gateway_lines = json_lines(gateway.log())
    assert any(
        line["logger"] == "jobtask.access"
        and line.get("request_id") == "req-observe1"
        and line["status"] == 200
        for line in gateway_lines
    )

    for part in topology.parts:
        log = part.log()
        for secret in (ROOT_TOKEN, worker_token, bad_token):
            assert secret not in log, f"{part.name} logged a token"
