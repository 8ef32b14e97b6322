"""The `jobtask` command as a subprocess: people's commands against a real cluster, and the
server commands (`up`, `serve`, `db upgrade`) started and stopped like an operator would."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import secrets
import signal
import socket
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jobtask.cli import servers
from jobtask.cli.main import build_parser
from jobtask.sdk import AsyncClient, UnavailableError
from jobtask.server.app import server_credentials
from sqlalchemy.engine import make_url

from tests.clients.conftest import ROOT_TOKEN, Workers, cli_env, run_cli, run_once
from tests.conftest import Cluster, postgres_admin_url, start_jobtask
from tests.tls import self_signed

# A hung subprocess fails its test instead of hanging the run.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_submit_get_list_cancel(live: Cluster) -> None:
    submitted = await run_cli(
        live, "submit", "hash.py", "-p", "input=abc", "-p", "n=3", "-c", "max_nodes=2", "--json"
    )
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    uuid = job["uuid"]
    assert job["script_parameters"] == {"input": "abc", "n": 3}
    assert job["runtime_constraints"]["max_nodes"] == 2
    assert job["status"] == "queued"  # as REST spells it, not JOB_STATUS_QUEUED

    got = await run_cli(live, "get", uuid, "--json")
    assert json.loads(got.stdout)["uuid"] == uuid
    human = await run_cli(live, "get", uuid)
    assert "status:      queued" in human.stdout

    listed = await run_cli(live, "list", "-f", "script", "=", "hash.py", "--json")
    body = json.loads(listed.stdout)
    assert [j["uuid"] for j in body["items"]] == [uuid]
    assert body["items_available"] == 1  # a number, as REST sends it
    assert body["kind"] == "arvados#jobList" and isinstance(body["limit"], int)
    empty = await run_cli(live, "queue", "-f", "script", "=", "nothing.py", "--json")
    assert json.loads(empty.stdout)["items"] == []  # the key is there, as in REST
    queue = await run_cli(live, "queue")
    assert uuid in queue.stdout

    tasks = await run_cli(live, "tasks", uuid, "--json")
    (task,) = json.loads(tasks.stdout)
    assert task["job_uuid"] == uuid

    canceled = await run_cli(live, "cancel", uuid)
    assert canceled.returncode == 0
    assert canceled.stdout.strip() == f"{uuid} canceled"
    watched = await run_cli(live, "watch", uuid)
    assert watched.returncode == 1  # the job ended, but not completed
    assert watched.stdout.splitlines()[-1] == f"job {uuid} canceled"

    assert (await run_cli(live, "requeue", uuid)).stdout.strip() == f"{uuid} queued"
    paused = await run_cli(live, "pause", uuid, "--json")
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["status"] == "paused"
    assert (await run_cli(live, "resume", uuid)).stdout.strip() == f"{uuid} queued"


async def test_errors_are_one_line_and_non_zero(live: Cluster) -> None:
    missing = await run_cli(live, "get", "zzzzz-8i9sb-000000000000000")
    assert missing.returncode == 1
    assert missing.stderr.startswith("jobtask: not found:")
    assert "Traceback" not in missing.stderr
    bad = await run_cli(live, "cancel", "nonsense")
    assert bad.returncode == 1
    assert bad.stderr.startswith("jobtask: invalid argument:")
    usage = await run_cli(live, "submit", "x.py", "-p", "novalue")
    assert usage.returncode == 2
    assert "key=value" in usage.stderr
    down = await run_cli(live, "get", "zzzzz-8i9sb-000000000000000", "--jobs-addr", "127.0.0.1:1")
    assert down.returncode == 1
    assert "cannot reach the jobtask services" in down.stderr


async def test_watch_follows_a_job_to_completion(live: Cluster, workers: Workers) -> None:
    submitted = await run_cli(live, "submit", "fanout.py", "-p", 'words=["x","y"]', "-p", "delay=1")
    uuid = submitted.stdout.strip()
    watching = await start_jobtask(
        "watch",
        uuid,
        "--logs",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(live),
    )
    assert watching.stdout is not None
    # The workers start once the watch follows the job (its snapshot on screen): a watch
    # that subscribed after the children were created would show them in its snapshot,
    # not as they are created (a loaded machine started the worker's process first).
    first = await asyncio.wait_for(watching.stdout.readline(), 60)
    await workers.start("w", slots=2)
    rest, err = await asyncio.wait_for(watching.communicate(), 60)
    assert watching.returncode == 0, err.decode()
    lines = [first.decode().rstrip("\n"), *rest.decode().splitlines()]
    assert "snapshot job" in lines[0]
    assert any(" created (sequence 1)" in line for line in lines)
    assert any(" progress 50.0%" in line for line in lines)
    assert any(" completed progress 100.0%, success reported" in line for line in lines)
    assert any("| working on x" in line for line in lines)
    assert lines[-1] == f"job {uuid} completed"

    logs = await run_cli(live, "logs", uuid)
    assert "created 2 child tasks" in logs.stdout
    followed = await run_cli(live, "logs", "--follow", uuid)  # ends: the job is terminal
    assert followed.stdout == logs.stdout
    events = await run_cli(live, "watch", uuid, "--json")
    assert json.loads(events.stdout.splitlines()[0])["type"] == "snapshot"


class PtyReader:
    """Collects what a child writes to a pseudo-terminal, on the event loop (a thread
    blocked reading the pty would outlive a failed test and hang the loop's shutdown)."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.data = bytearray()
        self.closed = asyncio.Event()
        os.set_blocking(master, False)
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every holder of the terminal's other end closed it
            chunk = b""
        if chunk:
            self.data.extend(chunk)
            return
        self.stop()

    def stop(self) -> None:
        if not self.closed.is_set():
            asyncio.get_running_loop().remove_reader(self.master)
            self.closed.set()


async def test_watch_draws_progress_bars_on_a_terminal(live: Cluster, workers: Workers) -> None:
    submitted = await run_cli(live, "submit", "slow.py", "-p", "seconds=2")
    uuid = submitted.stdout.strip()
    master, slave = pty.openpty()
    reader = PtyReader(master)
    proc = None
    try:
        proc = await start_jobtask(
            "watch",
            uuid,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=slave,
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(live),
        )
        os.close(slave)
        slave = -1
        await workers.start("w")
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await asyncio.wait_for(reader.closed.wait(), 10)
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.stop()
        if slave >= 0:
            os.close(slave)
        os.close(master)
    screen = reader.data.decode()
    assert "\x1b[" in screen  # redrawn in place
    assert "job active " in screen
    assert "job completed 100.0%  todo 0, running 0, done 1, failed 0" in screen
    assert "  task zzzzz-ot0gb-" in screen  # a line for the running task, with its bar
    assert "#" in screen


async def _start_server(tmp_path: Path, *args: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    """Starts `jobtask <args>` and reads its banner up to the line naming the last address."""
    env = {
        **os.environ,
        "JOBTASK_DATABASE_URL": str(tmp_path / "jobtask.sqlite3"),
        "JOBTASK_SYSTEM_ROOT_TOKEN": ROOT_TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    proc = await start_jobtask(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        if not line:
            raise AssertionError(f"jobtask {' '.join(args)} exited: {lines}")
        lines.append(line.rstrip("\n"))
        if args[0] != "up" or line.startswith("press Ctrl-C"):
            return proc, lines


def _address(lines: list[str], label: str) -> str:
    for line in lines:
        if line.startswith(label):
            return line.split()[-1]
    raise AssertionError(f"no {label} in {lines}")


async def _health(addr: str, service: str) -> int:
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(response.status)


async def _stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGINT) -> int:
    proc.send_signal(sig)
    try:
        return await asyncio.wait_for(proc.wait(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_up_serves_everything_and_stops_on_sigint(tmp_path: Path) -> None:
    listen = ("--jobs-listen", "127.0.0.1:0", "--tasks-listen", "127.0.0.1:0")
    proc, lines = await _start_server(tmp_path, "up", *listen, "--gateway-listen", "127.0.0.1:0")
    try:
        jobs_addr, tasks_addr = _address(lines, "JobService:"), _address(lines, "TaskService:")
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await _health(jobs_addr, "jobtask.v1.JobService") == serving
        assert await _health(tasks_addr, "jobtask.v1.TaskService") == serving
        gateway = _address(lines, "gateway:")
        async with AsyncClient.connect(jobs_addr, tasks_addr, ROOT_TOKEN) as client:
            job = await client.submit("hash.py")
            assert len(await client.tasks(job.uuid)) == 1
        async with httpx.AsyncClient(base_url=gateway) as http:
            got = await http.get(
                f"/arvados/v1/jobs/{job.uuid}", headers={"Authorization": f"OAuth2 {ROOT_TOKEN}"}
            )
        assert got.status_code == 200, got.text
        assert got.json()["uuid"] == job.uuid
    finally:
        assert await _stop(proc) == 0
    assert (tmp_path / "jobtask.sqlite3").exists()


async def test_up_stops_cleanly_on_a_ctrl_c_right_after_it_says_press_ctrl_c(
    tmp_path: Path,
) -> None:
    """The line promises that Ctrl-C stops it: a SIGINT sent the moment it is printed
    stops the servers (exit 0, "stopping"), not the process with 130 (the handlers were set
    only after the start-up's heap was collected and frozen)."""
    listen = ("--jobs-listen", "127.0.0.1:0", "--tasks-listen", "127.0.0.1:0", "--no-gateway")
    proc, _ = await _start_server(tmp_path, "up", *listen)
    assert await _stop(proc) == 0
    assert proc.stdout is not None
    assert "stopping" in (await proc.stdout.read()).decode()


async def _health_cli(addr: str, *args: str) -> int:
    """`jobtask health` as a container health check runs it (JOBTASK_TLS_CA unset)."""
    env = {k: v for k, v in os.environ.items() if k != "JOBTASK_TLS_CA"}
    proc = await start_jobtask("health", addr, *args, env=env)
    return await asyncio.wait_for(proc.wait(), 30)


async def test_up_with_grpc_tls(tmp_path: Path) -> None:
    """--grpc-tls-cert/--grpc-tls-key: the services speak TLS only. The SDK and `jobtask
    health` reach them given the CA, not without it, and the in-process gateway verifies
    them by their own (self-signed) certificate."""
    cert, key = self_signed(tmp_path)
    listen = ("--jobs-listen", "127.0.0.1:0", "--tasks-listen", "127.0.0.1:0")
    tls = ("--grpc-tls-cert", str(cert), "--grpc-tls-key", str(key))
    proc, lines = await _start_server(
        tmp_path, "up", *listen, *tls, "--gateway-listen", "127.0.0.1:0"
    )
    try:
        jobs_addr, tasks_addr = _address(lines, "JobService:"), _address(lines, "TaskService:")
        async with AsyncClient.connect(
            jobs_addr, tasks_addr, ROOT_TOKEN, tls_ca_file=str(cert)
        ) as client:
            job = await client.submit("hash.py")
            assert len(await client.tasks(job.uuid)) == 1
        async with AsyncClient.connect(jobs_addr, tasks_addr, ROOT_TOKEN, timeout=5) as plain:
            with pytest.raises(UnavailableError):
                await plain.get(job.uuid)
        async with httpx.AsyncClient(base_url=_address(lines, "gateway:")) as http:
            got = await http.get(
                f"/arvados/v1/jobs/{job.uuid}", headers={"Authorization": f"OAuth2 {ROOT_TOKEN}"}
            )
        assert got.status_code == 200, got.text
        service = ("--service", "jobtask.v1.TaskService", "--timeout", "3")
        assert await _health_cli(tasks_addr, *service, "--tls-ca", str(cert)) == 0
        assert await _health_cli(tasks_addr, *service) == 1
    finally:
        assert await _stop(proc) == 0


def test_worker_retention_reaches_the_services(monkeypatch: pytest.MonkeyPatch) -> None:
    """--worker-retention, else $JOBTASK_WORKER_RETENTION, else 7 days, in seconds."""
    parse = build_parser().parse_args
    monkeypatch.delenv("JOBTASK_WORKER_RETENTION", raising=False)
    assert servers._service_options(parse(["up"]))["worker_retention"] == 7 * 24 * 3600
    monkeypatch.setenv("JOBTASK_WORKER_RETENTION", "120")
    assert servers._service_options(parse(["up"]))["worker_retention"] == 120
    flagged = parse(["serve", "tasks", "--worker-retention", "90"])
    assert servers._service_options(flagged)["worker_retention"] == 90


def test_grpc_tls_needs_both_files(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    with pytest.raises(ValueError, match="both a certificate and its key"):
        server_credentials(str(cert), None)
    assert server_credentials(None, None) is None


async def test_serve_each_part_in_its_own_process(tmp_path: Path) -> None:
    upgraded = await start_jobtask(
        "db",
        "upgrade",
        "--database-url",
        f"sqlite:///{tmp_path / 'jobtask.sqlite3'}",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await upgraded.communicate()
    assert upgraded.returncode == 0
    assert "schema at" in out.decode()
    jobs, jobs_lines = await _start_server(
        tmp_path, "serve", "jobs", "--jobs-listen", "127.0.0.1:0"
    )
    tasks, tasks_lines = await _start_server(
        tmp_path, "serve", "tasks", "--tasks-listen", "127.0.0.1:0"
    )
    jobs_addr = _address(jobs_lines, "JobService:")
    tasks_addr = _address(tasks_lines, "TaskService:")
    gateway, gateway_lines = await _start_server(
        tmp_path,
        "serve",
        "gateway",
        "--gateway-listen",
        "127.0.0.1:0",
        "--jobs-addr",
        jobs_addr,
        "--tasks-addr",
        tasks_addr,
    )
    try:
        async with AsyncClient.connect(jobs_addr, tasks_addr, ROOT_TOKEN) as client:
            job = await client.submit("split.py")
            (task,) = await client.tasks(job.uuid)
            assert (await client.get_task(task.uuid)).job_uuid == job.uuid
        async with httpx.AsyncClient(base_url=_address(gateway_lines, "gateway:")) as http:
            got = await http.get(
                "/arvados/v1/job_tasks", headers={"Authorization": f"Bearer {ROOT_TOKEN}"}
            )
        assert got.status_code == 200, got.text
        assert [t["uuid"] for t in got.json()["items"]] == [task.uuid]
    finally:
        assert await _stop(gateway) == 0
        assert await _stop(jobs, signal.SIGTERM) == 0
        assert await _stop(tasks) == 0


async def test_a_second_up_on_ports_in_use_stops_with_one_line(tmp_path: Path) -> None:
    """Another `jobtask up` on a port the first holds fails at once, saying which, instead of
    sharing the port (gRPC's SO_REUSEPORT) and taking half the first one's calls."""
    listen = ("--jobs-listen", "127.0.0.1:0", "--tasks-listen", "127.0.0.1:0")
    first, lines = await _start_server(tmp_path, "up", *listen, "--gateway-listen", "127.0.0.1:0")
    try:
        jobs_addr = _address(lines, "JobService:")
        gateway = _address(lines, "gateway:").removeprefix("http://")
        other = tmp_path / "other"
        other.mkdir()
        for taken in (
            ("--jobs-listen", jobs_addr, "--tasks-listen", "127.0.0.1:0"),
            (*listen, "--gateway-listen", gateway),
        ):
            second = await start_jobtask(
                "up",
                "--database-url",
                str(other / "jobtask.sqlite3"),
                *taken,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "GRPC_VERBOSITY": "NONE"},
            )
            _, err = await asyncio.wait_for(second.communicate(), 60)
            assert second.returncode == 1
            said = [line for line in err.decode().splitlines() if line.strip()]
            in_use = jobs_addr if taken[1] == jobs_addr else gateway
            assert said == [
                f"jobtask: error: cannot listen on {in_use}: Address already in use"
            ] or (
                said
                == [
                    f"jobtask: error: cannot listen on {in_use}: the address is in use or "
                    "not available"
                ]
            ), said
        async with AsyncClient.connect(jobs_addr, _address(lines, "TaskService:"), ROOT_TOKEN) as c:
            for _ in range(8):  # every call still reaches the first server and its database
                await c.list()
    finally:
        assert await _stop(first) == 0


async def test_whole_numbers_print_as_integers(live: Cluster) -> None:
    submitted = await run_cli(
        live, "submit", "exact.py", "-p", "n=4", "-p", "f=2.5", "-p", "l=[1,2]", "--json"
    )
    assert submitted.returncode == 0, submitted.stderr
    # The parameters only: the whole record's timestamps and etag may hold "4.0" or "2.0".
    parameters = json.loads(submitted.stdout)["script_parameters"]
    assert parameters == {"n": 4, "f": 2.5, "l": [1, 2]}
    assert type(parameters["n"]) is int and all(type(i) is int for i in parameters["l"])
    uuid = json.loads(submitted.stdout)["uuid"]
    human = await run_cli(live, "get", uuid)
    (line,) = [ln for ln in human.stdout.splitlines() if ln.startswith("parameters:")]
    assert '"n": 4' in line and "4.0" not in line and '"l": [1, 2]' in line, line
    refused = await run_cli(live, "submit", "exact.py", "-p", f"n={2**53 + 1}")
    assert refused.returncode != 0 and "script_parameters.n" in refused.stderr


async def _named_loop(proc: asyncio.subprocess.Process) -> str:
    """The event loop a `jobtask` process names in its start-up log line."""
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        if not line:
            raise AssertionError("exited without naming its event loop")
        if "event loop: " in line:
            return line.split("event loop: ", 1)[1].strip()


@pytest.mark.parametrize(("setting", "expected"), [("", "uvloop"), ("asyncio", "asyncio")])
async def test_up_and_worker_run_uvloop_unless_told_asyncio(
    tmp_path: Path, setting: str, expected: str
) -> None:
    """`jobtask up` and `jobtask worker` run on uvloop by default and on asyncio's own loop
    with $JOBTASK_EVENT_LOOP=asyncio; they say which as they start, and stop on SIGTERM."""
    env = {
        **os.environ,
        "JOBTASK_DATABASE_URL": str(tmp_path / "jobtask.sqlite3"),
        "JOBTASK_SYSTEM_ROOT_TOKEN": ROOT_TOKEN,
        "JOBTASK_EVENT_LOOP": setting,
        "PYTHONUNBUFFERED": "1",
    }
    listen = ("--jobs-listen", "127.0.0.1:0", "--tasks-listen", "127.0.0.1:0", "--no-gateway")
    pipes = {"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.PIPE}
    server = await start_jobtask("up", *listen, env=env, cwd=tmp_path, **pipes)
    worker = None
    try:
        assert server.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("press Ctrl-C"):
            line = (await asyncio.wait_for(server.stdout.readline(), 60)).decode()
            assert line, f"jobtask up exited: {lines}"
            lines.append(line.rstrip("\n"))
        assert (await _named_loop(server)).split()[0] == expected
        (tmp_path / "scripts").mkdir()
        worker = await start_jobtask(
            "worker",
            "--jobs-addr",
            _address(lines, "JobService:"),
            "--tasks-addr",
            _address(lines, "TaskService:"),
            "--scripts-dir",
            str(tmp_path / "scripts"),
            env={**env, "JOBTASK_TOKEN": ROOT_TOKEN},
            cwd=tmp_path,
            **pipes,
        )
        assert (await _named_loop(worker)).split()[0] == expected
        assert await _stop(worker, signal.SIGTERM) == 0
    finally:
        if worker is not None and worker.returncode is None:
            worker.kill()
            await worker.wait()
        assert await _stop(server, signal.SIGTERM) == 0


async def test_an_unknown_event_loop_setting_is_refused(tmp_path: Path) -> None:
    proc = await start_jobtask(
        "up",
        env={**os.environ, "JOBTASK_EVENT_LOOP": "tokio"},
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "JOBTASK_EVENT_LOOP" in err.decode()
    assert not (tmp_path / "jobtask.sqlite3").exists()


async def test_get_shows_a_task_field_by_field(live: Cluster, client: AsyncClient) -> None:
    job = await client.submit("hash.py", {"input": "a"}, allow_duplicate=True)
    (task,) = await client.tasks(job.uuid)
    shown = await run_cli(live, "get", task.uuid)
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(":", 1) for line in shown.stdout.splitlines())
    assert fields["uuid"].strip() == task.uuid
    assert fields["job"].strip() == job.uuid
    assert fields["status"].strip() == "queued" and fields["sequence"].strip() == "0"


@pytest.mark.postgres
async def test_database_urls_print_without_their_password(
    tmp_path: Path, postgres_url: str
) -> None:
    """`db upgrade`, `db current`, `token` and `up` say which database they use, its password
    hidden."""
    url = make_url(postgres_url)
    assert url.password, "JOBTASK_TEST_POSTGRES_URL needs a password for this test"
    # The password may be the user's name too: look for it where a URL would hold it.
    secret = f":{url.password}@"
    hidden = url.render_as_string(hide_password=True)
    for args in (("db", "upgrade"), ("db", "current"), ("token", "list")):
        code, said = await run_once(*args, "--database-url", postgres_url)
        assert code == 0, said
        assert secret not in said and hidden in said, said
    listen = ("--jobs-listen", "127.0.0.1:0", "--tasks-listen", "127.0.0.1:0", "--no-gateway")
    proc, lines = await _start_server(tmp_path, "up", "--database-url", postgres_url, *listen)
    try:
        banner = "\n".join(lines)
        assert secret not in banner and f"database:    {hidden}" in banner, banner
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await _health(_address(lines, "JobService:"), "jobtask.v1.JobService") == serving
    finally:
        assert await _stop(proc) == 0


def _closed_port() -> int:
    """A loopback port nothing listens on (just closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.postgres
async def test_database_errors_are_one_line_without_the_password() -> None:
    """A wrong password, a database that is not there, a server that refuses: one line naming
    the database (its password hidden) and the reason, exit code 1 -- no traceback."""
    url = make_url(postgres_admin_url())
    wrong = f"wrong-{secrets.token_hex(4)}"
    missing = f"jobtask_missing_{secrets.token_hex(4)}"
    cases = [
        (
            ("serve", "jobs", "--jobs-listen", "127.0.0.1:0"),
            url.set(password=wrong, database="postgres"),
            "password authentication failed",
        ),
        (("db", "upgrade"), url.set(database=missing), f'database "{missing}" does not exist'),
        (("db", "current"), url.set(database=missing), f'database "{missing}" does not exist'),
        (("db", "current"), url.set(password=wrong), "password authentication failed"),
        (("db", "current"), url.set(port=_closed_port()), "Connection refused"),
    ]
    for args, bad, reason in cases:
        given = bad.render_as_string(hide_password=False)
        code, said = await run_once(*args, "--database-url", given)
        lines = [line for line in said.splitlines() if line.strip()]
        assert code == 1, said
        assert len(lines) == 1, said
        hidden = bad.render_as_string(hide_password=True)
        assert lines[0].startswith(f"jobtask: database error ({hidden}): "), said
        assert reason in lines[0], said
        assert "Traceback" not in said and f":{bad.password}@" not in said, said
        assert wrong not in said, said


async def test_zero_lease_ttl_retry_limit_and_worker_retention_are_refused(
    tmp_path: Path,
) -> None:
    """A lease of 0 seconds expires as it is granted, a task gets at least one attempt
    (the services refuse a retry limit of 0), and a worker kept 0 seconds would be forgotten
    as it stops: said at once, naming the flag (or variable) -- not replaced by the default.
    A retry limit of 1 (no retries) is the least one, and taken."""
    for flag in ("--lease-ttl", "--retry-limit", "--worker-retention"):
        for value in ("0", "-1"):
            code, said = await run_once("up", "--database-url", str(tmp_path / "db"), flag, value)
            assert code == 2, said
            assert f"error: argument {flag}: " in said and f"not {value}" in said, said
    for variable in ("JOBTASK_LEASE_TTL", "JOBTASK_WORKER_RETENTION"):
        code, said = await run_once("up", "--database-url", str(tmp_path / "db"), **{variable: "0"})
        assert code == 2, said
        assert f"jobtask: error: ${variable} must be a number of seconds above 0, not 0" in said
    assert not (tmp_path / "db").exists()
    listen = ("--jobs-listen", "127.0.0.1:0", "--tasks-listen", "127.0.0.1:0", "--no-gateway")
    proc, lines = await _start_server(tmp_path, "up", *listen, "--retry-limit", "1")
    try:
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await _health(_address(lines, "JobService:"), "jobtask.v1.JobService") == serving
    finally:
        assert await _stop(proc) == 0


async def test_an_argument_the_sdk_refuses_is_bad_usage() -> None:
    """Refused before any call (the SDK's InvalidArgumentError, no server's status): exit 2
    and one line, as the command line's own checks of the same flag."""
    addrs = ("--jobs-addr", "127.0.0.1:1", "--tasks-addr", "127.0.0.1:1")
    code, said = await run_once("submit", "hash.py", "--constraint", "bogus=1", *addrs)
    assert code == 2, said
    assert said.startswith("jobtask: error: unknown runtime constraint 'bogus'"), said
    assert len(said.splitlines()) == 1, said
