"""4. Unary paths: CreateJob, GetJob and ListJobs calls/s through gRPC against a bare echo
server, and the same GetJob as a REST GET through the gateway against direct gRPC.

What is measured: 32 closed-loop callers on one channel in this process (the server is a
child process on SQLite), each call with the system user's stored API token, so every call
is authenticated like a worker's or a user's. CreateJob submits a new job each call
(allow_duplicate; one job row, its first task and two events per call); GetJob reads one job;
ListJobs reads a page of 20 of ~1,000 jobs. The echo ceiling answers GetJobRequest with the
same Job message GetJob returns. REST: GET /arvados/v1/jobs/{uuid} through the gateway
(its own process), 32 keep-alive connections from a load generator in a third process;
the ratio is to direct gRPC GetJob measured by the same kind of generator in the same run.
"""

from __future__ import annotations

import asyncio

from jobtask.v1 import job_service_pb2

from bench.harness import Config, Result, child, log, median
from bench.load import closed_loop
from bench.stack import bare_server, database, running

CONCURRENCY = 32


async def run(cfg: Config) -> list[Result]:
    seconds = cfg.pick(3.0, 0.5)
    figures: dict[str, list[float]] = {
        k: [] for k in ("echo", "create", "get", "list", "rest", "grpc_get_child")
    }
    async with database("sqlite") as url, running(url) as stack:
        job = await stack.submit()
        got = await stack.jobs.GetJob(
            job_service_pb2.GetJobRequest(uuid=job.uuid), metadata=stack.md
        )
        # A table of ~1,000 jobs for ListJobs to page through.
        await asyncio.gather(*(stack.submit() for _ in range(cfg.pick(1000, 50))))
        get_req = job_service_pb2.GetJobRequest(uuid=job.uuid)
        list_req = job_service_pb2.ListJobsRequest(limit=20)
        async with (
            bare_server(got) as (_, bare_channel),
            child("bench.gateway", stack.jobs_addr, stack.tasks_addr) as (_, gw),
        ):
            from bench.bare import stubs

            echo = stubs(bare_channel)["echo"]
            md = stack.md
            for i in range(cfg.runs):
                log(f"unary run {i + 1}/{cfg.runs}")
                figures["echo"].append(
                    await closed_loop(
                        lambda: echo(get_req, metadata=md),
                        concurrency=CONCURRENCY,
                        seconds=seconds,
                    )
                )
                figures["get"].append(
                    await closed_loop(
                        lambda: stack.jobs.GetJob(get_req, metadata=md),
                        concurrency=CONCURRENCY,
                        seconds=seconds,
                    )
                )
                figures["list"].append(
                    await closed_loop(
                        lambda: stack.jobs.ListJobs(list_req, metadata=md),
                        concurrency=CONCURRENCY,
                        seconds=seconds,
                    )
                )
                figures["create"].append(
                    await closed_loop(stack.submit, concurrency=CONCURRENCY, seconds=seconds)
                )
                async with child(
                    "bench.load",
                    "http",
                    "127.0.0.1",
                    str(gw["port"]),
                    f"/arvados/v1/jobs/{job.uuid}",
                    stack.token,
                    str(CONCURRENCY),
                    str(seconds),
                ) as (_, out):
                    figures["rest"].append(out["rate"])
    echo_rate = median(figures["echo"])
    get_rate = median(figures["get"])
    rest_rate = median(figures["rest"])
    results = [
        Result(
            "unary",
            "GetJob",
            "calls/s",
            get_rate,
            "bare echo",
            echo_rate,
            target=">= 0.5x",
            runs=figures["get"],
        ),
        Result(
            "unary",
            "ListJobs (20 of 1,000)",
            "calls/s",
            median(figures["list"]),
            "bare echo",
            echo_rate,
            runs=figures["list"],
        ),
        Result(
            "unary",
            "CreateJob",
            "calls/s",
            median(figures["create"]),
            "bare echo",
            echo_rate,
            runs=figures["create"],
        ),
        Result(
            "unary",
            "REST GET job",
            "calls/s",
            rest_rate,
            "gRPC GetJob",
            get_rate,
            target=">= 0.6x",
            runs=figures["rest"],
        ),
    ]
    for r in results:
        if r.target and not cfg.smoke and r.ratio is not None:
            r.met = r.ratio >= float(r.target.split()[1].rstrip("x"))
    return results
