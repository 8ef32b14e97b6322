"""Real worker processes running real scripts (tests/scripts) against real servers."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
from jobtask.sdk import AsyncClient
from jobtask.sdk.errors import InvalidArgumentError
from jobtask.v1 import job_pb2, job_task_pb2, watch_pb2

from tests.clients.conftest import (
    ROOT_TOKEN,
    SCRIPTS,
    Workers,
    killed_at_exit,
    run_cli,
)
from tests.conftest import Cluster, start_cluster
from tests.polling import eventually
from tests.processes import alive

JS = job_pb2.JobStatus
TS = job_task_pb2.TaskStatus
W = watch_pb2.WatchEventType
TERMINAL = (JS.JOB_STATUS_COMPLETED, JS.JOB_STATUS_FAILED, JS.JOB_STATUS_CANCELED)

# A hung subprocess fails its test instead of hanging the run.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def finished(client: AsyncClient, uuid: str, within: float = 30.0) -> job_pb2.Job:
    async def check() -> job_pb2.Job | None:
        job = await client.get(uuid)
        return job if job.status in TERMINAL else None

    result: job_pb2.Job = await eventually(check, within=within)
    return result


async def active_task(client: AsyncClient, job_uuid: str) -> job_task_pb2.JobTask:
    async def check() -> job_task_pb2.JobTask | None:
        for task in await client.tasks(job_uuid):
            if task.status == TS.TASK_STATUS_ACTIVE and task.progress > 0:
                return task
        return None

    result: job_task_pb2.JobTask = await eventually(check)
    return result


async def test_children_run_after_their_creator_and_outputs_combine(
    client: AsyncClient, workers: Workers
) -> None:
    job = await client.submit("fanout.py", {"words": ["alpha", "beta", "gamma"], "delay": 0.2})
    await workers.start("a", slots=2)
    await workers.start("b", node="node2", slots=2)
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_COMPLETED, await client.tasks(job.uuid)
    # Children's outputs in creation order (the seed task's output is empty).
    assert done.output == "ALPHA\nBETA\nGAMMA\n"
    seed, *children = await client.tasks(job.uuid)
    assert seed.sequence == 0 and len(children) == 3
    for child in children:
        assert child.sequence == 1
        assert child.created_by_job_task_uuid == seed.uuid
        assert child.status == TS.TASK_STATUS_COMPLETED
        assert child.started_at.ToDatetime() >= seed.finished_at.ToDatetime()
        assert "working on" in child.log
    assert "created 3 child tasks" in seed.log


async def test_progress_is_coalesced_and_every_log_line_kept(
    client: AsyncClient, workers: Workers
) -> None:
    job = await client.submit("chatty.py")
    await workers.start("chatty")
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_COMPLETED
    progress = 0
    logged = []
    # The whole change feed of the job, from its start (after_seq=0).
    async for event in client.watch(job.uuid, after_seq=0):
        if event.type == W.WATCH_EVENT_TYPE_TASK_PROGRESS:
            progress += 1
        elif event.type == W.WATCH_EVENT_TYPE_TASK_LOG:
            logged.append(event.log)
    script_lines = [
        line
        for line in "".join(logged).splitlines(keepends=True)
        if not line.startswith("[jobtask-worker] ")  # the worker's own attempt lines
    ]
    assert "".join(script_lines) == "".join(f"line {i:04d}\n" for i in range(1, 2001))
    assert progress < 100  # 2,000 reports, sent as the latest value every half second


async def test_kill_9_of_a_worker_retries_its_task_elsewhere(
    client: AsyncClient, workers: Workers
) -> None:
    job = await client.submit("slow.py", {"seconds": 3})
    first = await workers.start("doomed", node="node1")
    task = await active_task(client, job.uuid)
    assert task.worker_id == first.worker_id
    first.proc.send_signal(signal.SIGKILL)
    await first.proc.wait()
    second = await workers.start("rescuer", node="node2")
    done = await finished(client, job.uuid, within=40)
    assert done.status == JS.JOB_STATUS_COMPLETED
    (retried,) = await client.tasks(job.uuid)
    assert retried.worker_id == second.worker_id
    assert retried.failed_count == 1
    assert retried.attempt == 2
    assert done.output == "node2"


async def test_cancel_stops_the_whole_process_tree_within_5_seconds(
    client: AsyncClient, workers: Workers, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pids"
    # Stubborn: the script and its child ignore SIGINT and SIGTERM; only SIGKILL works.
    job = await client.submit("sleeper.py", {"pidfile": str(pidfile), "stubborn": "true"})
    worker = await workers.start("w", slots=1)
    await eventually(pidfile.exists)
    pids = [int(p) for p in pidfile.read_text().split()]
    with killed_at_exit(pids):
        assert all(alive(pid) for pid in pids)
        await active_task(client, job.uuid)
        canceled_at = time.monotonic()
        assert (await client.cancel(job.uuid)).status == JS.JOB_STATUS_CANCELED
        await eventually(lambda: not any(alive(pid) for pid in pids), within=5.0, interval=0.05)
        assert time.monotonic() - canceled_at < 5.0
    # The slot is free again: the worker runs the next job.
    follow_up = await client.submit("shell_task", {"name": "next"})
    assert (await finished(client, follow_up.uuid)).output == "shell:next"
    assert worker.proc.returncode is None


async def test_sigterm_hands_running_tasks_back(client: AsyncClient, workers: Workers) -> None:
    job = await client.submit("slow.py", {"seconds": 30})
    worker = await workers.start("leaving")
    await active_task(client, job.uuid)
    worker.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(worker.proc.wait(), 10) == 0, worker.log()
    (task,) = await client.tasks(job.uuid)
    assert task.status == TS.TASK_STATUS_QUEUED
    assert task.failed_count == 0
    assert (await client.get(job.uuid)).status not in TERMINAL


async def test_the_task_environment(live: Cluster, client: AsyncClient, workers: Workers) -> None:
    job = await client.submit("env_dump.py", {"name": "zed", "count": 3, "obj": {"x": [1, 2]}})
    await workers.start(
        "env",
        node="envnode",
        JOBTASK_GATEWAY_ADDR="127.0.0.1:8443",
        ARVADOS_API_HOST_INSECURE="1",
        ARVADOS_API_TOKEN="the-workers-own-secret",
    )
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_COMPLETED
    env = json.loads(done.output)
    (task,) = await client.tasks(job.uuid)
    assert env["JOB_UUID"] == env["CRUNCH_JOB_UUID"] == job.uuid
    assert env["TASK_UUID"] == task.uuid
    assert env["TASK_SEQUENCE"] == "0"
    assert env["TASK_QSEQUENCE"] == str(task.qsequence)
    assert env["TASK_ATTEMPT"] == str(task.attempt) == "1"
    assert env["JOB_SCRIPT"] == "env_dump.py"
    assert env["JOB_PARAMETER_NAME"] == "zed"
    assert env["JOB_PARAMETER_COUNT"] == "3"
    assert json.loads(env["JOB_PARAMETER_OBJ"]) == {"x": [1, 2]}
    assert env["HOME"] == env["TASK_WORK"]
    assert env["TASK_WORK"].startswith(env["CRUNCH_TMP"])
    assert env["JOB_WORK"].startswith(env["CRUNCH_TMP"])
    assert env["TASK_SLOT_NODE"] == "envnode"
    assert env["TASK_SLOT_NUMBER"] == "0"
    assert env["JOBTASK_JOBS_ADDR"] == live.jobs_addr
    assert env["JOBTASK_TASKS_ADDR"] == live.tasks_addr
    assert env["JOBTASK_REPORT_FD"] == "3"
    # The task's own token, never the worker's.
    assert env["JOBTASK_TOKEN"] not in ("", ROOT_TOKEN)
    assert env["ARVADOS_API_TOKEN"] == env["JOBTASK_TOKEN"]
    assert env["ARVADOS_API_HOST"] == "127.0.0.1:8443"
    assert env["ARVADOS_API_HOST_INSECURE"] == "1"


async def test_scripts_outside_the_scripts_directory_are_refused(
    client: AsyncClient, workers: Workers, tmp_path: Path
) -> None:
    """A name that leads out of the scripts directory is refused at submission, naming the
    field; one that only a worker can see leads out (a symbolic link) fails there for good."""
    for script in ("../clients/conftest.py", "/etc/passwd", "sub/../../x.py", "dir/"):
        with pytest.raises(InvalidArgumentError) as refused:
            await client.submit(script)
        assert refused.value.field == "script", script
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "escape.py").symlink_to(SCRIPTS.parent / "clients" / "conftest.py")
    job = await client.submit("escape.py")
    await workers.start("strict", scripts_dir=scripts)
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_FAILED
    (task,) = await client.tasks(job.uuid)
    assert task.success is False
    assert "outside the scripts directory" in task.log


async def test_exit_without_success_is_retried_then_fails(
    client: AsyncClient, workers: Workers
) -> None:
    job = await client.submit("fail.py")
    await workers.start("flaky")
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_FAILED
    (task,) = await client.tasks(job.uuid)
    assert task.failed_count == 3
    assert "about to fail" in (task.failed_log or "")
    assert "exit code 3" in (task.failed_log or "")


async def test_stream_resumes_after_the_task_service_restarts(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The worker's RunTask stream breaks when the server restarts; it reopens it with the
    same lease, and the attempt completes without a failure."""
    first = await start_cluster(sqlite_url, lease_ttl=4.0, root_token=ROOT_TOKEN)
    current = [first]
    workers = Workers(first, tmp_path)
    try:
        async with AsyncClient.connect(first.jobs_addr, first.tasks_addr, ROOT_TOKEN) as c:
            job = await c.submit("slow.py", {"seconds": 3})
            await workers.start("steady")
            await active_task(c, job.uuid)
            jobs_addr, tasks_addr = first.jobs_addr, first.tasks_addr
            await first.close()
            current.clear()
            current.append(
                await start_cluster(
                    sqlite_url,
                    lease_ttl=4.0,
                    root_token=ROOT_TOKEN,
                    jobs_listen=jobs_addr,
                    tasks_listen=tasks_addr,
                )
            )
            async with AsyncClient.connect(jobs_addr, tasks_addr, ROOT_TOKEN) as again:
                done = await finished(again, job.uuid)
                (task,) = await again.tasks(job.uuid)
        assert done.status == JS.JOB_STATUS_COMPLETED, workers.started[0].log()
        assert (task.attempt, task.failed_count) == (1, 0)
        assert "step 10/10" in task.log
    finally:
        await workers.stop_all()
        for cluster in current:
            await cluster.close()


async def test_a_worker_scoped_token_is_enough(
    database_url: str, live: Cluster, client: AsyncClient, workers: Workers
) -> None:
    """`jobtask token create --worker` gives a token that may claim and run tasks only."""
    created = await run_cli(live, "token", "create", "--worker", "--database-url", database_url)
    assert created.returncode == 0, created.stderr
    worker_token = created.stdout.strip()
    job = await client.submit("fanout.py", {"words": ["one"]})
    await workers.start("scoped", JOBTASK_TOKEN=worker_token)
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_COMPLETED
    assert done.output == "ONE\n"
    # The worker's token cannot do what a person does.
    denied = await run_cli(live, "list", JOBTASK_TOKEN=worker_token)
    assert denied.returncode == 1
    assert "permission denied" in denied.stderr


async def test_a_lost_lease_kills_the_script(sqlite_url: str, tmp_path: Path) -> None:
    """The TaskService goes away for good: after one lease ttl of failed reconnects the
    lease is surely gone, and the worker kills the script rather than let it run unowned."""
    # A ttl that a loaded machine's pauses stay well inside: with 2 s a heartbeat answered
    # late once let the server expire the lease before the test closed it (a STOP, not
    # the watchdog this test is about).
    ttl = 4.0
    cluster = await start_cluster(sqlite_url, lease_ttl=ttl, root_token=ROOT_TOKEN)
    workers = Workers(cluster, tmp_path)
    pidfile = tmp_path / "pids"
    running = True
    try:
        async with AsyncClient.connect(cluster.jobs_addr, cluster.tasks_addr, ROOT_TOKEN) as c:
            await c.submit("sleeper.py", {"pidfile": str(pidfile)})
            worker = await workers.start("orphaned")
            await eventually(pidfile.exists)
        pids = [int(p) for p in pidfile.read_text().split()]
        with killed_at_exit(pids):
            assert all(alive(pid) for pid in pids), worker.log()
            await cluster.close()
            running = False
            gone_at = time.monotonic()
            await eventually(lambda: not any(alive(pid) for pid in pids), within=ttl + 8.0)
            assert time.monotonic() - gone_at < ttl + 5.0
        assert worker.proc.returncode is None  # the worker itself keeps trying to claim
        log = worker.log()
        assert "the lease is gone, killing the process" in log, log
    finally:
        await workers.stop_all()
        if running:
            await cluster.close()
