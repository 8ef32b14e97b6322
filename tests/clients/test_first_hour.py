"""What a newcomer meets in the first hour (issue 19): errors that say which flag and what to do,
quiet pipes, `--version`, shell completion, a worker whose token is refused, a canceled task's
script, the attempts in a task's log, and streams that say when the server is gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from jobtask.sdk import AsyncClient
from jobtask.v1 import job_pb2, job_task_pb2, watch_pb2

from tests.clients.conftest import (
    Workers,
    cli_env,
    run_cli,
)
from tests.clients.test_worker import finished
from tests.conftest import ROOT, Cluster, start_jobtask
from tests.polling import eventually

JS = job_pb2.JobStatus
TS = job_task_pb2.TaskStatus


async def test_bad_flags_are_named(live: Cluster) -> None:
    constraint = await run_cli(live, "submit", "slow.py", "-c", "max_nodes=abc")
    assert constraint.returncode == 2
    assert constraint.stderr.strip() == (
        "jobtask: error: --constraint max_nodes='abc': the value must be a whole number"
    )
    parameters = await run_cli(live, "submit", "slow.py", "--parameters", "{bad")
    assert parameters.returncode == 2
    assert parameters.stderr.startswith("jobtask: error: --parameters: not valid JSON (")
    filters = await run_cli(live, "list", "--filters", "[1,")
    assert filters.stderr.startswith("jobtask: error: --filters: not valid JSON (")


async def test_no_token_gets_a_hint(live: Cluster) -> None:
    missing = await run_cli(live, "list", JOBTASK_TOKEN="")
    assert missing.returncode == 1
    assert "set $JOBTASK_TOKEN or pass --token" in missing.stderr
    wrong = await run_cli(live, "list", JOBTASK_TOKEN="not-a-token")
    assert wrong.returncode == 1
    assert "unauthenticated" in wrong.stderr and "JOBTASK_TOKEN" not in wrong.stderr


async def test_tasks_of_an_unknown_job_is_an_error(live: Cluster) -> None:
    unknown = await run_cli(live, "tasks", "zzzzz-8i9sb-000000000000404")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("jobtask: not found:"), unknown.stderr


async def test_a_closed_pipe_ends_quietly(live: Cluster, client: AsyncClient) -> None:
    for _ in range(3):
        await client.submit("slow.py", allow_duplicate=True)
    read, write = os.pipe()
    os.close(read)  # `| head -0`: nobody reads
    proc = await start_jobtask(
        "list",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=write,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(live),
    )
    os.close(write)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert err.decode() == ""


async def test_version_and_completion(tmp_path: Path) -> None:
    version = await start_jobtask("--version", stdout=asyncio.subprocess.PIPE)
    out, _ = await version.communicate()
    assert version.returncode == 0 and out.decode().startswith("jobtask 0.")
    completion = await start_jobtask("completion", "bash", stdout=asyncio.subprocess.PIPE)
    script, _ = await completion.communicate()
    (tmp_path / "jobtask.bash").write_bytes(script)
    bash = shutil.which("bash")
    assert bash is not None

    def complete(*words: str) -> list[str]:
        line = " ".join(["jobtask", *words])
        probe = (
            f"source {tmp_path / 'jobtask.bash'}\n"
            f"COMP_WORDS=({line}); COMP_CWORD={len(words)}\n"
            '_jobtask; printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        done = subprocess.run([bash, "-c", probe], capture_output=True, text=True, check=True)
        return done.stdout.split()

    assert {"submit", "watch", "worker", "token", "completion"} <= set(complete(""))
    assert complete("su") == ["submit"]
    assert "--priority" in complete("submit", "--p")
    assert complete("token", "cr") == ["create"]
    assert "--worker" in complete("token", "create", "--w")
    assert complete("serve", "ga") == ["gateway"]


async def test_a_worker_whose_token_is_refused_stops_and_says_why(
    live: Cluster, workers: Workers
) -> None:
    worker = await workers.start("w", JOBTASK_TOKEN="v2/zzzzz-gj3su-000000000000000/nope")
    assert await asyncio.wait_for(worker.proc.wait(), 60) == 1
    log = worker.log()
    assert "the worker's token was refused" in log
    assert "jobtask token create --worker" in log
    assert log.count("token was refused") == 1  # said once, not once per retry


async def test_a_canceled_tasks_script_is_told_its_task_was_canceled(
    live: Cluster, client: AsyncClient, workers: Workers, tmp_path: Path
) -> None:
    said = tmp_path / "said.txt"
    job = await client.submit("after_cancel.py", {"out": str(said)})
    await workers.start("w")

    async def waiting() -> bool:
        return any("waiting to be canceled" in t.log for t in await client.tasks(job.uuid))

    await eventually(waiting, within=60)
    await client.cancel(job.uuid)
    text = await eventually(lambda: said.exists() and said.read_text(), within=60)
    assert text.startswith("UnauthenticatedError: task canceled: "), text


async def test_logs_separate_the_attempts(
    live: Cluster, client: AsyncClient, workers: Workers
) -> None:
    job = await client.submit("fail.py")
    await workers.start("w")
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_FAILED
    logs = await run_cli(live, "logs", job.uuid)
    lines = logs.stdout.splitlines()
    opened = [n for n, line in enumerate(lines) if "] attempt " in line and " on node1 " in line]
    ended = [n for n, line in enumerate(lines) if "ended: exit code 3" in line]
    assert len(opened) == 3 and len(ended) == 3, logs.stdout
    # Each attempt's lines sit between its opening and its end.
    assert opened[0] < ended[0] < opened[1] < ended[1] < opened[2] < ended[2]
    assert "[jobtask-worker] attempt 2 on node1 (worker node1-w)" in logs.stdout


async def test_watch_says_when_the_services_are_gone(live: Cluster, client: AsyncClient) -> None:
    job = await client.submit("slow.py")
    proc = await start_jobtask(
        "watch",
        job.uuid,
        "--plain",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(live, JOBTASK_JOBS_ADDR="127.0.0.1:1"),
    )
    assert proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert line.decode().startswith("jobtask: lost the jobtask services (jobs 127.0.0.1:1")
        assert "reconnecting" in line.decode()
    finally:
        proc.kill()
        await proc.wait()


async def test_the_readme_tutorial_reports_progress(
    live: Cluster, client: AsyncClient, workers: Workers
) -> None:
    """README's "Try it" job (examples/crunch_scripts/tutorial.py), shortened: its tasks report
    progress along the way, so `jobtask watch` has something to show."""
    readme = (ROOT / "README.md").read_text()
    assert "jobtask submit tutorial.py" in readme
    job = await client.submit("tutorial.py", {"steps": 2, "seconds": 2})
    await workers.start("w", slots=2, scripts_dir=ROOT / "examples" / "crunch_scripts")
    progress = []
    async for event in client.watch(job.uuid):
        if event.type == watch_pb2.WATCH_EVENT_TYPE_TASK_PROGRESS:
            progress.append(event.progress)
        elif event.type == watch_pb2.WATCH_EVENT_TYPE_TASK_CHANGED:
            progress.append(event.task.progress)
    done = await client.get(job.uuid)
    assert done.status == JS.JOB_STATUS_COMPLETED
    assert done.output == "step 1: done after 2 s\nstep 2: done after 2 s\n"
    assert len([p for p in progress if 0 < p < 1]) >= 2


async def test_the_documented_functions_worker_starts_from_the_checkout(
    live: Cluster, client: AsyncClient, tmp_path: Path
) -> None:
    """`jobtask worker --functions examples.functions:functions`, as the worker's README
    has it, from the checkout: the console script (not `python -m`, which puts the
    directory on the path by itself) finds the module in the directory it started in."""
    env = cli_env(live)
    env.pop("PYTHONPATH", None)
    command = Path(sys.executable).parent / "jobtask"
    job = await client.submit("shout", {"words": ["alpha", "beta"]}, allow_duplicate=True)
    with (tmp_path / "worker.log").open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(command), "worker", "--functions", "examples.functions:functions",
            "--slots", "2", "--work-dir", str(tmp_path), "--claim-wait", "1",
            cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        done = await finished(client, job.uuid, within=60)
        log = (tmp_path / "worker.log").read_text()
        assert done.status == JS.JOB_STATUS_COMPLETED, log
        assert done.output == "ALPHA\nBETA\n"
    finally:
        with contextlib.suppress(ProcessLookupError):  # (it may have stopped by itself)
            proc.kill()
        await proc.wait()
    # A module that is not there is one line naming it, not a traceback.
    missing = await run_cli(live, "worker", "--functions", "no_such_module:functions")
    assert missing.returncode != 0
    assert "cannot import no_such_module" in missing.stderr, missing.stderr
    assert "Traceback" not in missing.stderr


async def test_health_of_an_unknown_service_says_so(live: Cluster) -> None:
    answer = await run_cli(live, "health", live.tasks_addr, "--service", "nosuch")
    assert answer.returncode == 1
    assert answer.stderr.strip().endswith(
        "nosuch: not_found: the server publishes no health for this service"
    ), answer.stderr


async def test_the_readme_tutorial_canceled_ends_quietly(
    live: Cluster, client: AsyncClient, workers: Workers
) -> None:
    """Canceling the tutorial's job (the README's next step for many) stops its tasks
    without a KeyboardInterrupt traceback in their logs."""
    job = await client.submit("tutorial.py", {"steps": 1, "seconds": 60}, allow_duplicate=True)
    await workers.start("w", slots=2, scripts_dir=ROOT / "examples" / "crunch_scripts")

    async def counting() -> job_task_pb2.JobTask | None:
        for task in await client.tasks(job.uuid):
            if task.sequence == 1 and task.status == TS.TASK_STATUS_ACTIVE and task.progress > 0:
                return task
        return None

    running = await eventually(counting, within=60)  # a child, in its sleep
    await client.cancel(job.uuid)
    await finished(client, job.uuid, within=60)

    async def stopped() -> job_task_pb2.JobTask | None:
        task = await client.get_task(running.uuid)
        return task if "ended" in (task.log or "") else None

    task = await eventually(stopped, within=60)
    assert "Traceback" not in task.log and "KeyboardInterrupt" not in task.log, task.log
