"""The Node worker's hold on its leases, each test against a `jobtask up` of its own: its
WorkerSession survives a server restart (the leases reattached by reporting on them), and
a server that goes silent (a partition: the connection hangs, nothing fails) gets the
script killed before the lease can have expired, on either protocol."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from jobtask.sdk import AsyncClient
from jobtask.v1 import job_pb2, job_task_pb2

from tests.polling import eventually
from tests.polyglot.conftest import (
    ROOT_TOKEN,
    NodeBuild,
    Processes,
    own_up,
    start_up,
    stop_up,
)
from tests.processes import alive

JS = job_pb2.JobStatus
TS = job_task_pb2.TaskStatus
TERMINAL = (JS.JOB_STATUS_COMPLETED, JS.JOB_STATUS_FAILED, JS.JOB_STATUS_CANCELED)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_the_session_reattaches_its_lease_after_the_server_restarts(
    node_build: NodeBuild, tmp_path: Path
) -> None:
    """The session breaks when `jobtask up` stops (a shutdown leaves the leases alive); the
    worker reopens it on the restarted server, reports on its task again, and the attempt
    completes without a failure."""
    # Long enough a lease to outlive the restart on a loaded machine.
    up = own_up(tmp_path, lease_ttl=15.0)
    processes = Processes(up, node_build, tmp_path)
    current = [up]
    try:
        worker = processes.node_worker("steady")
        async with AsyncClient.connect(up.jobs_addr, up.tasks_addr, ROOT_TOKEN) as c:
            job = await c.submit("steps.sh", {"steps": 10, "delay": 0.4, "name": "again"})

            async def running() -> bool:
                tasks = await c.tasks(job.uuid)
                return bool(tasks) and tasks[0].status == TS.TASK_STATUS_ACTIVE

            await eventually(running)
        stop_up(up)
        current[0] = start_up(
            tmp_path,
            up.database_url,
            up.jobs_addr,
            up.tasks_addr,
            lease_ttl=15.0,
            log_name="jobtask-up-again.log",
        )
        async with AsyncClient.connect(up.jobs_addr, up.tasks_addr, ROOT_TOKEN) as c:

            async def decided() -> job_pb2.Job | None:
                found = await c.get(job.uuid)
                return found if found.status in TERMINAL else None

            done = await eventually(decided, within=60)
            (task,) = await c.tasks(job.uuid)
        assert done.status == JS.JOB_STATUS_COMPLETED, worker.log()
        assert done.output == "done again"
        assert (task.attempt, task.failed_count) == (1, 0), task
        assert "step 1 of 10\n" in task.log and "step 10 of 10\n" in task.log, task.log
        log = worker.log()
        assert "(WorkerSession)" in log and "worker session broken" in log, log
        assert "lease lost" not in log, log
    finally:
        await processes.stop_all()
        for cluster in current:
            stop_up(cluster)


@pytest.mark.parametrize("protocol", ["session", "stream"])
async def test_a_silent_server_gets_the_script_killed_before_its_lease_expires(
    node_build: NodeBuild, tmp_path: Path, protocol: str
) -> None:
    """The server stops answering without closing anything (SIGSTOP: the connections
    hang): by its own clock the worker kills the script a margin before the lease could
    have expired unrenewed, so the server's reaper never finds it running."""
    up = own_up(tmp_path, lease_ttl=3.0)
    processes = Processes(up, node_build, tmp_path)
    pidfile = tmp_path / "sleeper.pid"
    try:
        worker = processes.node_worker("partitioned", protocol=protocol)
        async with AsyncClient.connect(up.jobs_addr, up.tasks_addr, ROOT_TOKEN) as c:
            await c.submit("sleeper.sh", {"pidfile": str(pidfile)})
            await eventually(pidfile.exists)
        pid = int(pidfile.read_text())
        assert alive(pid)
        up.proc.send_signal(signal.SIGSTOP)
        await eventually(lambda: not alive(pid), within=30)
        await eventually(lambda: "the lease is gone" in worker.log())
        log = worker.log()
        assert "lease not renewed for" in log, log
        # Killed at once (STOP), not stopped politely.
        assert not (tmp_path / "sleeper.pid.signals").exists()
        assert worker.proc.poll() is None, log  # the worker itself lives on
    finally:
        up.proc.send_signal(signal.SIGCONT)
        await processes.stop_all()
        stop_up(up)
