"""Crunch-style scripts written against the real Arvados SDK, run by a real `jobtask worker`.

The scripts are executables whose `#!` line is the SDK virtualenv's python; the worker gives
them ARVADOS_API_HOST (its --gateway-addr) and ARVADOS_API_TOKEN (the task's own token), and
passes ARVADOS_API_HOST_INSECURE through. Everything they do goes through the HTTPS gateway
with the task's token; the job then completes by the seeds' completion rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from jobtask.domain.scopes import WORKER_SCOPES
from jobtask.manager.tokens import issue_token
from jobtask.v1 import (
    job_pb2,
    job_service_pb2,
    job_task_pb2,
    task_service_pb2,
)

from tests.arvados_sdk.conftest import SdkStack
from tests.conftest import start_jobtask

JS = job_pb2.JobStatus
TS = job_task_pb2.TaskStatus
TERMINAL = (JS.JOB_STATUS_COMPLETED, JS.JOB_STATUS_FAILED, JS.JOB_STATUS_CANCELED)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# Both scripts silence the SDK's own deprecation warnings (the Jobs helpers are deprecated
# since 2.7.0) so the task logs hold only what the scripts print.
HELLO = """\
import os, warnings
warnings.simplefilter("ignore", DeprecationWarning)
import arvados

job = arvados.current_job()
task = arvados.current_task()
assert job["uuid"] == os.environ["JOB_UUID"], job["uuid"]
assert task["uuid"] == os.environ["TASK_UUID"], task["uuid"]
assert task["job_uuid"] == job["uuid"] and task["sequence"] == 0
assert os.environ["ARVADOS_API_TOKEN"] == os.environ["JOBTASK_TOKEN"]
print("hello from", task["uuid"], "of", job["uuid"], "in", job["state"])
task.set_output(job["script_parameters"]["greeting"].upper() + "\\n")
"""

FANOUT = """\
import warnings
warnings.simplefilter("ignore", DeprecationWarning)
import arvados

# The seeds' completion rule wants progress=1.0 with success=true, but the helper's
# and_end_task sends {"success": true} alone, which fails the task (progress 0). So the
# first task reports its progress first; the rule reads the record as it then stands.
task = arvados.current_task()
if task["sequence"] == 0:
    arvados.api("v1").job_tasks().update(uuid=task["uuid"], body={"progress": 1.0}).execute()

# Sequence 0: one child task per file of the literal manifest in script_parameters.input,
# created through the gateway with this task's token; then this task succeeds and exits.
arvados.job_setup.one_task_per_input_file(if_sequence=0, and_end_task=True)

# Sequence 1: each child has a one-file manifest as its input.
task = arvados.current_task()
assert task["sequence"] == 1, task
stream, locator, segment = task["parameters"]["input"].split()
name = segment.split(":", 2)[2]
print("child", task["uuid"], "got", name, "from", task["created_by_job_task_uuid"])
task.set_output(stream + " " + locator + " " + segment.replace(name, name + ".seen") + "\\n")
"""

# Three files in one stream: no Keep or collections calls are made for a literal manifest.
MANIFEST = ". 5d41402abc4b2a76b9719d911017c592+5 0:1:a.txt 1:2:b.txt 3:2:c.txt\n"


@dataclass
class Worker:
    """A real `jobtask worker` process; killed at the end of the test."""

    proc: asyncio.subprocess.Process
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Crunch:
    stack: SdkStack
    scripts: Path
    tmp_path: Path
    workers: list[Worker] = field(default_factory=list)

    def write_script(self, name: str, body: str) -> None:
        """An executable whose interpreter is the SDK virtualenv's python."""
        path = self.scripts / name
        path.write_text(f"#!{self.stack.python}\n{body}")
        path.chmod(0o755)

    async def start_worker(self) -> Worker:
        services = self.stack.services
        _, worker_token = await issue_token(
            services.core.db, services.core.settings, scopes=WORKER_SCOPES
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ARVADOS_", "JOBTASK_"))}
        env.update(
            JOBTASK_JOBS_ADDR=f"127.0.0.1:{services.jobs_port}",
            JOBTASK_TASKS_ADDR=f"127.0.0.1:{services.tasks_port}",
            JOBTASK_TOKEN=worker_token,
            ARVADOS_API_HOST_INSECURE="1",
            PYTHONUNBUFFERED="1",
        )
        work = self.tmp_path / "work"
        work.mkdir(exist_ok=True)
        log_path = self.tmp_path / "worker.log"
        with log_path.open("wb") as out:
            proc = await start_jobtask(
                "worker",
                "--scripts-dir",
                str(self.scripts),
                "--work-dir",
                str(work),
                "--gateway-addr",
                self.stack.api_host,
                "--node-name",
                "sdk-node",
                "--slots",
                "2",
                "--claim-wait",
                "1",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
        worker = Worker(proc, log_path)
        self.workers.append(worker)
        return worker

    async def submit(self, script: str, parameters: dict[str, Any]) -> job_pb2.Job:
        spec = job_pb2.Job(script=script, script_version="master", repository="sdk")
        spec.script_parameters.update(parameters)
        job: job_pb2.Job = await self.stack.jobs.CreateJob(
            job_service_pb2.CreateJobRequest(job=spec)
        )
        return job

    async def finished(self, uuid: str, within: float = 90.0) -> job_pb2.Job:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            job: job_pb2.Job = await self.stack.jobs.GetJob(
                job_service_pb2.GetJobRequest(uuid=uuid)
            )
            if job.status in TERMINAL:
                return job
            for worker in self.workers:
                if worker.proc.returncode is not None:
                    raise AssertionError(f"the worker exited early:\n{worker.log()}")
            if loop.time() > deadline:
                logs = "\n".join(w.log() for w in self.workers)
                raise AssertionError(f"job {uuid} not finished in {within}s:\n{logs}")
            await asyncio.sleep(0.2)

    async def tasks(self, job_uuid: str) -> list[job_task_pb2.JobTask]:
        request = task_service_pb2.ListTasksRequest(order=["qsequence asc"])
        request.filters.append(["job_uuid", "=", job_uuid])  # type: ignore[arg-type]  # a list is a value
        response = await self.stack.tasks.ListTasks(request)
        return list(response.items)

    def explain(self, tasks: list[job_task_pb2.JobTask]) -> str:
        lines = [
            f"{t.uuid} seq={t.sequence} status={TS.Name(t.status)} success={t.success} "
            f"progress={t.progress}\n  log: {t.log!r}\n  failed_log: {t.failed_log!r}"
            for t in tasks
        ]
        return "\n".join([*lines, *(w.log() for w in self.workers)])

    async def stop(self) -> None:
        for worker in self.workers:
            if worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
                await worker.proc.wait()


@pytest.fixture
async def crunch(sdk_stack: SdkStack, tmp_path: Path) -> AsyncIterator[Crunch]:
    scripts = tmp_path / "crunch_scripts"
    scripts.mkdir()
    c = Crunch(sdk_stack, scripts, tmp_path)
    try:
        yield c
    finally:
        await c.stop()


def _struct(value: struct_pb2.Struct) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(value)
    return result


async def test_current_job_current_task_and_set_output(crunch: Crunch) -> None:
    crunch.write_script("sdk_hello", HELLO)
    job = await crunch.submit("sdk_hello", {"greeting": "hello, arvados"})
    await crunch.start_worker()
    done = await crunch.finished(job.uuid)
    tasks = await crunch.tasks(job.uuid)
    assert done.status == JS.JOB_STATUS_COMPLETED, crunch.explain(tasks)
    assert done.output == "HELLO, ARVADOS\n"
    assert done.success is True and done.state == "Complete"
    (task,) = tasks
    assert task.status == TS.TASK_STATUS_COMPLETED
    assert task.success is True and task.progress == 1.0
    assert task.output == "HELLO, ARVADOS\n"
    assert f"hello from {task.uuid} of {job.uuid} in Running" in task.log


async def test_one_task_per_input_file_creates_children_through_the_gateway(
    crunch: Crunch,
) -> None:
    crunch.write_script("sdk_fanout", FANOUT)
    job = await crunch.submit("sdk_fanout", {"input": MANIFEST})
    await crunch.start_worker()
    done = await crunch.finished(job.uuid)
    tasks = await crunch.tasks(job.uuid)
    assert done.status == JS.JOB_STATUS_COMPLETED, crunch.explain(tasks)
    seed, *children = tasks
    assert seed.sequence == 0 and seed.status == TS.TASK_STATUS_COMPLETED
    assert seed.success is True
    assert len(children) == 3
    inputs = []
    for child in children:
        assert child.sequence == 1
        assert child.created_by_job_task_uuid == seed.uuid
        assert child.status == TS.TASK_STATUS_COMPLETED
        assert child.success is True and child.progress == 1.0
        assert child.started_at.ToDatetime() >= seed.finished_at.ToDatetime()
        task_input = _struct(child.parameters)["input"]
        name = task_input.split(":")[-1].strip()
        assert f"got {name} from {seed.uuid}" in child.log
        inputs.append(task_input)
    # One single-file manifest per file, as the SDK's ArvadosFile.as_manifest() writes it.
    assert sorted(inputs) == [
        ". 5d41402abc4b2a76b9719d911017c592+5 0:1:a.txt\n",
        ". 5d41402abc4b2a76b9719d911017c592+5 1:2:b.txt\n",
        ". 5d41402abc4b2a76b9719d911017c592+5 3:2:c.txt\n",
    ]
    # The job's output: its tasks' outputs in order of creation (the seed set none).
    assert not seed.output
    expected = "".join(i.replace(".txt\n", ".txt.seen\n") for i in inputs)
    assert done.output == expected


async def test_a_py_script_runs_under_its_own_shebang_interpreter(crunch: Crunch) -> None:
    """A `.py` crunch script whose `#!` names the SDK virtualenv's python runs under that
    python (as crunch-job executed it), not the worker's: `import arvados` works there only."""
    crunch.write_script(
        "sdk_hello.py",
        HELLO + 'print("interpreter", __import__("sys").prefix)\n',
    )
    job = await crunch.submit("sdk_hello.py", {"greeting": "shebang"})
    await crunch.start_worker()
    done = await crunch.finished(job.uuid)
    tasks = await crunch.tasks(job.uuid)
    assert done.status == JS.JOB_STATUS_COMPLETED, crunch.explain(tasks)
    assert done.output == "SHEBANG\n"
    (task,) = tasks
    assert f"interpreter {crunch.stack.python.parent.parent}" in task.log
