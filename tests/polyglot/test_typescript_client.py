"""The TypeScript package (clients/typescript) against a real `jobtask up`: the Node worker
and submitter examples, watched from Python, and a mixed fleet of Node and Python workers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from pathlib import Path

import pytest
from jobtask.sdk import AsyncClient
from jobtask.sdk.errors import InvalidArgumentError
from jobtask.v1 import job_pb2, job_task_pb2, watch_pb2

from tests.polling import eventually
from tests.polyglot.conftest import (
    ROOT_TOKEN,
    NodeBuild,
    Processes,
    own_up,
    stop_up,
)
from tests.processes import alive

JS = job_pb2.JobStatus
TS = job_task_pb2.TaskStatus
W = watch_pb2.WatchEventType
TERMINAL = (JS.JOB_STATUS_COMPLETED, JS.JOB_STATUS_FAILED, JS.JOB_STATUS_CANCELED)
CLAIMED = re.compile(r"task (\S+) of job \S+: claimed")
# What the Node worker's first line says it speaks, by JOBTASK_WORKER_PROTOCOL.
SPEAKS = {"session": "(WorkerSession)", "stream": "(ClaimTask/RunTask)"}
PROTOCOLS = pytest.mark.parametrize("protocol", ["session", "stream"])

# A hung subprocess fails its test instead of hanging the run.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_the_packages_unit_tests_pass(node_build: NodeBuild, tmp_path: Path) -> None:
    """clients/typescript/test (`npm test`), compiled with the package, against a `jobtask
    up` of its own: among them the lease renewals dated by when the answered message was
    sent, the real WorkerSession and TaskStream (with a fake clock of their own) holding the
    leases of tasks submitted here. Long leases: only the fake clock makes a heartbeat due."""
    up = own_up(tmp_path, lease_ttl=60.0)
    try:
        async with AsyncClient.connect(up.jobs_addr, up.tasks_addr, ROOT_TOKEN) as c:
            # A runnable task for each test that holds one (the session's and the stream's).
            for name in ("session", "stream"):
                await c.submit("steps.sh", {"name": name})
        proc = await asyncio.create_subprocess_exec(
            node_build.node,
            "--test",
            "dist/test/",
            cwd=node_build.dir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={
                **os.environ,
                "JOBTASK_TEST_TASKS_ADDR": up.tasks_addr,
                "JOBTASK_TEST_WORKER_TOKEN": up.worker_token,
            },
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 100)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        stop_up(up)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report
    assert "# fail 0" in report and "# skipped 0" in report, report


async def finished(client: AsyncClient, uuid: str, within: float = 30.0) -> job_pb2.Job:
    async def check() -> job_pb2.Job | None:
        job = await client.get(uuid)
        return job if job.status in TERMINAL else None

    job: job_pb2.Job = await eventually(check, within=within)
    return job


@PROTOCOLS
async def test_node_submitter_sees_the_node_workers_job_complete(
    client: AsyncClient, processes: Processes, protocol: str
) -> None:
    worker = processes.node_worker(f"w1-{protocol}", protocol=protocol)
    # A silent pause of 4 s (over the 3 s lease ttl): only heartbeats keep the lease.
    submit = processes.node_submit(
        "submit", "--new", "--logs", "steps.sh", "steps=3", "delay=0.6", "pause=4", "name=node"
    )
    assert await submit.wait() == 0, submit.log()
    out = submit.log()
    job_uuid = re.search(r"submitted (\S+) \(script steps\.sh\)", out)
    assert job_uuid, out
    # Progress from the watch, the task's status, its log lines (--logs), the job's end, and
    # the job's output, printed last on stdout.
    assert re.search(r"task \S+: progress (33|66)%", out), out
    assert f"completed on {worker.worker_id}" in out, out
    assert "| step 2 of 3" in out, out
    assert re.search(r"job \S+: completed", out), out
    assert out.endswith("done node"), out

    job = await client.get(job_uuid.group(1))
    assert job.status == JS.JOB_STATUS_COMPLETED
    assert job.output == "done node"
    (task,) = await client.tasks(job.uuid)
    assert task.status == TS.TASK_STATUS_COMPLETED
    assert task.worker_id == worker.worker_id and task.node_name == "node-js"
    assert task.attempt == 1 and task.failed_count == 0, task
    assert task.progress == 1.0 and task.success
    assert "step 1 of 3\nstep 2 of 3\nstep 3 of 3\n" in task.log
    assert SPEAKS[protocol] in worker.log(), worker.log()


async def test_python_watcher_sees_the_node_workers_progress(
    client: AsyncClient, processes: Processes
) -> None:
    job = await client.submit("steps.sh", {"steps": 4, "delay": 0.8, "name": "watched"})
    events: list[watch_pb2.WatchEvent] = []
    worker = None
    async for event in client.watch(job.uuid):
        events.append(event)
        if event.type == W.WATCH_EVENT_TYPE_SNAPSHOT and event.snapshot_done and worker is None:
            worker = processes.node_worker("w2")  # starts once the watch is in place
    assert worker is not None
    (task,) = await client.tasks(job.uuid)
    assert task.status == TS.TASK_STATUS_COMPLETED and task.worker_id == worker.worker_id

    progress = [
        e.progress
        for e in events
        if e.type == W.WATCH_EVENT_TYPE_TASK_PROGRESS and e.task_uuid == task.uuid
    ]
    # Steps of 0.8 s; progress is coalesced by the worker (0.5 s) and the server (0.1 s), so
    # each step's value arrives as its own event, in order (a badly stalled machine may merge
    # two: at least two of the three are required).
    assert progress == sorted(progress), progress
    assert len({0.25, 0.5, 0.75} & set(progress)) >= 2, progress
    assert task.progress == 1.0
    logs = "".join(e.log for e in events if e.type == W.WATCH_EVENT_TYPE_TASK_LOG)
    assert "step 1 of 4\n" in logs and "step 4 of 4\n" in logs, logs
    statuses = [
        e.task.status
        for e in events
        if e.type == W.WATCH_EVENT_TYPE_TASK_CHANGED and e.task.uuid == task.uuid
    ]
    assert statuses[0] == TS.TASK_STATUS_ACTIVE and statuses[-1] == TS.TASK_STATUS_COMPLETED
    assert events[-1].type == W.WATCH_EVENT_TYPE_JOB_CHANGED
    assert events[-1].job.status == JS.JOB_STATUS_COMPLETED
    assert events[-1].job.output == "done watched"


@PROTOCOLS
async def test_cancel_stops_the_node_workers_script(
    client: AsyncClient, processes: Processes, tmp_path: Path, protocol: str
) -> None:
    pidfile = tmp_path / "sleeper.pid"
    job = await client.submit("sleeper.sh", {"pidfile": str(pidfile)})
    worker = processes.node_worker(f"w3-{protocol}", protocol=protocol)
    await eventually(pidfile.exists)
    pid = int(pidfile.read_text())
    assert alive(pid)

    await client.cancel(job.uuid)
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_CANCELED
    # CANCEL reached the worker (over its session, or the task's RunTask stream): the script
    # got SIGINT (politely) and is gone.
    await eventually(lambda: not alive(pid), within=6)
    assert (tmp_path / "sleeper.pid.signals").read_text().split() == ["INT"]
    (task,) = await client.tasks(job.uuid)
    assert task.status == TS.TASK_STATUS_CANCELED
    assert task.worker_id == worker.worker_id
    await eventually(lambda: "canceled" in worker.log())
    assert SPEAKS[protocol] in worker.log(), worker.log()


@PROTOCOLS
async def test_stopping_the_node_worker_hands_its_task_back(
    client: AsyncClient, processes: Processes, tmp_path: Path, protocol: str
) -> None:
    pidfile = tmp_path / "sleeper.pid"
    job = await client.submit("sleeper.sh", {"pidfile": str(pidfile)})
    worker = processes.node_worker(f"w4-{protocol}", protocol=protocol)
    await eventually(pidfile.exists)
    pid = int(pidfile.read_text())

    worker.proc.send_signal(signal.SIGTERM)
    assert await worker.wait(10) == 0, worker.log()
    assert not alive(pid)
    assert (tmp_path / "sleeper.pid.signals").read_text().split() == ["INT"]
    # Handed back: queued again, not failed, and the job goes on.
    (task,) = await client.tasks(job.uuid)
    assert task.status == TS.TASK_STATUS_QUEUED, task
    assert task.failed_count == 0
    assert (await client.get(job.uuid)).status not in TERMINAL
    assert SPEAKS[protocol] in worker.log(), worker.log()
    await client.cancel(job.uuid)


async def test_a_mixed_fleet_runs_each_task_exactly_once(
    client: AsyncClient, processes: Processes
) -> None:
    children = 20
    node = processes.node_worker("fleet-js", slots=2)
    python = processes.python_worker("fleet-py", slots=2)
    # Both up and claiming before there is work: neither gets a head start.
    await eventually(lambda: all("slot(s)" in w.log() for w in (node, python)), within=30)
    assert SPEAKS["session"] in node.log(), node.log()
    job = await client.submit("fanout.py", {"tasks": children, "delay": 0.2})
    done = await finished(client, job.uuid, within=60)
    tasks = await client.tasks(job.uuid)
    assert done.status == JS.JOB_STATUS_COMPLETED, tasks
    assert len(tasks) == children + 1
    # Each task ran once: one attempt, never failed, completed.
    for task in tasks:
        assert task.status == TS.TASK_STATUS_COMPLETED, task
        assert task.attempt == 1 and task.failed_count == 0, task
        assert task.worker_id in (node.worker_id, python.worker_id), task
        assert (
            task.node_name
            == {node.worker_id: "node-js", python.worker_id: "node-py"}[task.worker_id]
        )
    ran_by = {
        worker.name: {t.uuid for t in tasks if t.worker_id == worker.worker_id}
        for worker in (node, python)
    }
    assert all(ran_by.values()), f"a worker ran no task: {ran_by}"
    # The children's outputs (their qsequence), in creation order; the seed's is empty.
    kids = tasks[1:]
    assert done.output == "".join(f"{t.qsequence}\n" for t in kids)
    # The workers' own accounts agree: each claimed its tasks and no task twice.
    claimed = {w.name: CLAIMED.findall(w.log()) for w in (node, python)}
    for name, uuids in claimed.items():
        assert len(uuids) == len(set(uuids)) and set(uuids) == ran_by[name], (name, claimed)
    assert not set(claimed["fleet-js"]) & set(claimed["fleet-py"])


async def test_the_node_workers_scripts_see_an_allow_listed_environment_and_no_token_is_logged(
    client: AsyncClient, processes: Processes
) -> None:
    """A script gets crunch's variables, PATH and the locale, and what the operator passes
    (JOBTASK_WORKER_PASS_ENV), never the rest of the worker's environment nor a secret even
    when named; neither the worker's token nor the task's appears in the worker's log."""
    job = await client.submit("env_dump.py", {"name": "zed"})
    worker = processes.node_worker(
        "env",
        WORKER_PRIVATE="not for tasks",
        PASSED_ALONG="for tasks",
        LC_TIME="C",
        JOBTASK_SYSTEM_ROOT_TOKEN="the-clusters-root-secret",
        JOBTASK_DATABASE_URL="postgresql://user:secret@db/jobtask",
        JOBTASK_WORKER_PASS_ENV="PASSED_ALONG,JOBTASK_SYSTEM_ROOT_TOKEN",
    )
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_COMPLETED, worker.log()
    env = json.loads(done.output)
    (task,) = await client.tasks(job.uuid)
    assert env["TASK_UUID"] == task.uuid and env["JOB_PARAMETER_NAME"] == "zed"
    assert env["PASSED_ALONG"] == "for tasks" and env["LC_TIME"] == "C"
    assert env["PATH"] == os.environ["PATH"]
    for withheld in ("WORKER_PRIVATE", "JOBTASK_SYSTEM_ROOT_TOKEN", "JOBTASK_DATABASE_URL"):
        assert withheld not in env, withheld
    task_token = env["JOBTASK_TOKEN"]
    assert task_token and task_token != processes.cluster.worker_token
    await processes.stop_all()
    log = worker.log()
    assert "(WorkerSession)" in log and f"task {task.uuid}: completed" in log, log
    assert task_token not in log and processes.cluster.worker_token not in log, log


async def test_a_script_outside_the_scripts_directory_is_refused(client: AsyncClient) -> None:
    """Refused at submission (the workers, the TypeScript one included, check again)."""
    with pytest.raises(InvalidArgumentError) as refused:
        await client.submit("../scripts/steps.sh")
    assert refused.value.field == "script"
