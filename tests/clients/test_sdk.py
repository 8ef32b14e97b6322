"""The SDK against real servers: round trips, typed errors, watch streams, the sync client."""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from collections.abc import Awaitable, Callable

import grpc
import jobtask.sdk
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from jobtask.sdk import (
    ERROR_CLASSES,
    AsyncClient,
    Client,
    FailedPreconditionError,
    InvalidArgumentError,
    JobtaskError,
    NotFoundError,
    UnavailableError,
    from_rpc_error,
)
from jobtask.sdk.sync import ASYNC_ONLY
from jobtask.v1 import job_pb2, job_task_pb2, task_service_pb2, watch_pb2, worker_pb2

from tests.clients.conftest import (
    ROOT_TOKEN,
)
from tests.conftest import Cluster, running_cluster
from tests.polling import eventually
from tests.worker_protocol.packing import finished_job, messages_of, watch_counter

JS = job_pb2.JobStatus
TS = job_task_pb2.TaskStatus
W = watch_pb2.WatchEventType
WE = worker_pb2.WorkerEventType
WS = worker_pb2.WorkerState
MISSING_JOB = "zzzzz-8i9sb-000000000000000"


def test_every_status_code_maps_to_its_own_exception() -> None:
    codes = [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK]
    assert set(ERROR_CLASSES) == set(codes)
    assert len(set(ERROR_CLASSES.values())) == len(codes)
    for code in codes:
        error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "why", None)
        exc = from_rpc_error(error)
        assert type(exc) is ERROR_CLASSES[code]
        assert isinstance(exc, JobtaskError)
        assert exc.code is code
        assert str(exc) == "why"


def test_rich_details_are_unpacked() -> None:
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="priority: too big")
    violation = error_details_pb2.BadRequest.FieldViolation(field="priority", description="big")
    status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    error = grpc.aio.AioRpcError(
        grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(), trailing, "priority: too big", None
    )
    exc = from_rpc_error(error)
    assert isinstance(exc, InvalidArgumentError)
    assert (exc.field, exc.description) == ("priority", "big")


def test_public_surface() -> None:
    assert set(jobtask.sdk.__all__) >= {"AsyncClient", "Client", "JobtaskError", "NotFoundError"}
    for name in jobtask.sdk.__all__:
        assert hasattr(jobtask.sdk, name)


async def test_job_round_trip(client: AsyncClient) -> None:
    job = await client.submit(
        "hash.py",
        {"input": "abc", "n": 3},
        version="main",
        priority=5,
        constraints={"max_tasks_per_node": 2, "min_ram_per_task": 1024},
        submit_id="round-trip-1",
    )
    assert job.status == JS.JOB_STATUS_QUEUED
    assert json_format.MessageToDict(job.script_parameters) == {"input": "abc", "n": 3}
    assert job.runtime_constraints.max_tasks_per_node == 2
    assert (await client.get(job.uuid)) == job
    # The same submit_id returns the same job.
    again = await client.submit(
        "hash.py",
        {"input": "abc", "n": 3},
        version="main",
        priority=5,
        constraints={"max_tasks_per_node": 2, "min_ram_per_task": 1024},
        submit_id="round-trip-1",
    )
    assert again.uuid == job.uuid
    other = await client.submit("other.py", priority=9)

    listed = await client.list([["script", "=", "hash.py"]])
    assert [j.uuid for j in listed.items] == [job.uuid]
    assert listed.items_available == 1
    page = await client.list(order="priority desc", select=["uuid"], limit=1, count="none")
    assert [j.uuid for j in page.items] == [other.uuid]
    with pytest.raises(TypeError, match="limt"):
        await client.list(limt=1)  # type: ignore[call-arg]
    queue = await client.queue()
    assert [j.uuid for j in queue.items] == [other.uuid, job.uuid]
    assert await client.queue_size() == 2

    tasks = await client.tasks(job.uuid)
    assert [(t.sequence, t.status) for t in tasks] == [(0, TS.TASK_STATUS_QUEUED)]
    extra = await client.create_task(job.uuid, sequence=2, parameters={"part": 1})
    assert [t.uuid for t in await client.tasks(job.uuid)] == [tasks[0].uuid, extra.uuid]

    paused = await client.pause(job.uuid)
    assert paused.status in (JS.JOB_STATUS_PAUSED, JS.JOB_STATUS_PAUSE_REQUESTED)
    assert (await client.resume(job.uuid)).status == JS.JOB_STATUS_QUEUED
    assert (await client.cancel(job.uuid)).status == JS.JOB_STATUS_CANCELED
    assert (await client.requeue(job.uuid)).status == JS.JOB_STATUS_QUEUED
    locked = await client.lock(other.uuid)
    assert locked.HasField("is_locked_by_uuid")


async def test_list_select_returns_trimmed_records(client: AsyncClient) -> None:
    job = await client.submit("hash.py", {"input": "abc"}, priority=4)
    page = await client.list(select=["uuid", "status"], limit=1)
    (listed,) = page.items
    assert (listed.uuid, listed.status) == (job.uuid, JS.JOB_STATUS_QUEUED)
    assert {f.name for f, _ in listed.ListFields()} == {"uuid", "status", "kind"}
    assert not listed.script and not listed.priority and not listed.HasField("created_at")
    (whole,) = (await client.list(limit=1)).items
    assert whole == job and whole.script == "hash.py" and whole.priority == 4
    tasks = await client.list_tasks([["job_uuid", "=", job.uuid]], select=["uuid"])
    assert [{f.name for f, _ in t.ListFields()} for t in tasks.items] == [{"uuid", "kind"}]


async def test_claim_then_report_with_the_task_token(live: Cluster, client: AsyncClient) -> None:
    job = await client.submit("hash.py", {"claim": 1})
    worker = task_service_pb2.WorkerInfo(worker_id="w-sdk", node_name="n1", free_slots=1)
    (assignment,) = await client.claim(worker, wait=5)
    assert assignment.job.uuid == job.uuid
    assert assignment.lease.lease_id and assignment.task_token
    task_uuid = assignment.task.uuid
    async with AsyncClient.connect(live.jobs_addr, live.tasks_addr, assignment.task_token) as own:
        assert (await own.report_progress(0.5, task_uuid)).progress == 0.5
        child = await own.create_child_task(
            {"part": 1}, parent_uuid=task_uuid, job_uuid=job.uuid, sequence=1
        )
        assert child.created_by_job_task_uuid == task_uuid
        reported = await own.set_output("out-1\n", task_uuid)
        assert (reported.progress, reported.success) == (1.0, True)
    done = await client.report_exit(task_uuid, assignment.lease.lease_id, exit_code=0)
    assert done.status == TS.TASK_STATUS_COMPLETED


async def test_typed_errors_from_the_server(client: AsyncClient) -> None:
    with pytest.raises(InvalidArgumentError) as bad:
        await client.get("not-a-uuid")
    assert bad.value.field == "uuid"
    with pytest.raises(NotFoundError):
        await client.get(MISSING_JOB)
    job = await client.submit("hash.py", {"errors": True})
    await client.cancel(job.uuid)
    with pytest.raises(FailedPreconditionError):
        await client.pause(job.uuid)
    with pytest.raises(ValueError, match="runtime constraint"):
        await client.submit("hash.py", constraints={"max_ram": 1})


async def test_unreachable_server_is_unavailable() -> None:
    async with AsyncClient.connect("127.0.0.1:1", "127.0.0.1:1", timeout=5) as c:
        with pytest.raises(UnavailableError):
            await c.get(MISSING_JOB)


async def test_watch_ends_when_the_job_is_terminal(client: AsyncClient) -> None:
    job = await client.submit("hash.py", {"watch": 1})
    events: list[watch_pb2.WatchEvent] = []

    async def collect() -> None:
        async for event in client.watch(job.uuid):
            events.append(event)

    watching = asyncio.create_task(collect())
    await eventually(lambda: events)  # the watch is open: its snapshot arrived
    await client.cancel(job.uuid)
    await asyncio.wait_for(watching, 10)
    assert events[0].type == W.WATCH_EVENT_TYPE_SNAPSHOT
    assert events[-1].type == W.WATCH_EVENT_TYPE_JOB_CHANGED
    assert events[-1].job.status == JS.JOB_STATUS_CANCELED
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)


async def test_watch_resumes_across_a_server_restart(sqlite_url: str) -> None:
    """The watcher's server goes away and comes back on the same ports: the stream resumes
    with after_seq and sees every later event exactly once."""
    from tests.conftest import start_cluster

    first = await start_cluster(sqlite_url, root_token=ROOT_TOKEN)
    jobs_addr, tasks_addr = first.jobs_addr, first.tasks_addr
    restarted: list[Cluster] = []
    try:
        async with AsyncClient.connect(jobs_addr, tasks_addr, ROOT_TOKEN) as c:
            job = await c.submit("hash.py", {"restart": 1})
            events: list[watch_pb2.WatchEvent] = []
            snapshot_seen = asyncio.Event()

            async def collect() -> None:
                async for event in c.watch(job.uuid, reconnect_for=20):
                    events.append(event)
                    if event.snapshot_done:
                        snapshot_seen.set()

            watching = asyncio.create_task(collect())
            await asyncio.wait_for(snapshot_seen.wait(), 10)
            await first.close()
            await asyncio.sleep(0.5)
            second = await start_cluster(
                sqlite_url,
                root_token=ROOT_TOKEN,
                jobs_listen=jobs_addr,
                tasks_listen=tasks_addr,
            )
            restarted.append(second)

            async def when_reconnected(call: Callable[[], Awaitable[object]]) -> None:
                async def attempt() -> bool:
                    try:
                        await call()
                    except UnavailableError:
                        return False  # the channel has not reconnected yet: calls fail fast
                    return True

                await eventually(attempt)

            await when_reconnected(
                lambda: c.create_task(job.uuid, sequence=1, parameters={"after": "restart"})
            )
            await when_reconnected(lambda: c.cancel(job.uuid))
            await asyncio.wait_for(watching, 20)
        kinds = [e.type for e in events]
        assert kinds.count(W.WATCH_EVENT_TYPE_SNAPSHOT) == 1
        assert kinds.count(W.WATCH_EVENT_TYPE_TASK_CREATED) == 1
        assert events[-1].job.status == JS.JOB_STATUS_CANCELED
        live_seqs = [e.seq for e in events[1:]]
        assert live_seqs == sorted(set(live_seqs))
    finally:
        for cluster in restarted:
            await cluster.close()
        if not restarted:
            await first.close()


async def test_sync_client(live: Cluster) -> None:
    def use() -> tuple[str, int, list[str]]:
        with Client.connect(live.jobs_addr, live.tasks_addr, ROOT_TOKEN) as c:
            job = c.submit("sync.py", {"k": "v"})
            c.cancel(job.uuid)
            kinds = [W.Name(e.type) for e in c.watch(job.uuid)]
            return c.get(job.uuid).uuid, c.get(job.uuid).status, kinds

    uuid, status, kinds = await asyncio.to_thread(use)
    assert uuid.startswith("zzzzz-8i9sb-")
    assert status == JS.JOB_STATUS_CANCELED
    assert kinds == ["WATCH_EVENT_TYPE_SNAPSHOT"]


def test_the_blocking_client_has_every_method_but_the_async_only_ones() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(AsyncClient) - public(Client) == ASYNC_ONLY
    assert public(Client) <= public(AsyncClient)


@pytest.mark.timeout(120)
async def test_sync_client_attempts_and_the_worker_registry(database_url: str) -> None:
    """The blocking client's attempts, exit report and worker registry calls, on a claim
    reported by hand (30 s leases: the worker must not turn lost before its goodbye)."""
    async with running_cluster(database_url, lease_ttl=30.0, root_token=ROOT_TOKEN) as live:

        def use() -> None:
            with Client.connect(live.jobs_addr, live.tasks_addr, ROOT_TOKEN) as c:
                events = c.watch_workers()
                snapshot = next(events)
                assert snapshot.type == WE.WORKER_EVENT_TYPE_SNAPSHOT and not snapshot.workers
                job = c.submit("sync.py", {"attempts": 1})
                info = task_service_pb2.WorkerInfo(
                    worker_id="w-sync", node_name="n1", slots=1, free_slots=1
                )
                (assignment,) = c.claim(info, wait=5)
                # The registry, read again at most each second, shows the claimer joined.
                joined = next(e for e in events if e.worker.worker_id == "w-sync")
                assert joined.type == WE.WORKER_EVENT_TYPE_JOINED
                assert joined.worker.state == WS.WORKER_STATE_LIVE
                task_uuid = assignment.task.uuid
                (running,) = c.task_attempts(task_uuid)
                assert (running.worker_id, running.outcome) == ("w-sync", "")
                with Client.connect(live.jobs_addr, live.tasks_addr, assignment.task_token) as own:
                    own.set_output("out\n", task_uuid)
                done = c.report_exit(
                    task_uuid, assignment.lease.lease_id, exit_code=0, log="all well\n"
                )
                assert done.status == TS.TASK_STATUS_COMPLETED

                (attempt,) = c.task_attempts(task_uuid)
                assert (attempt.task_uuid, attempt.job_uuid) == (task_uuid, job.uuid)
                assert (attempt.attempt, attempt.worker_id, attempt.node_name) == (
                    1,
                    "w-sync",
                    "n1",
                )
                assert (attempt.outcome, attempt.exit_code) == ("completed", 0)
                assert c.job_attempts(job.uuid) == [attempt]

                stopped = c.report_worker_stopped("w-sync")
                assert (stopped.worker_id, stopped.state) == ("w-sync", WS.WORKER_STATE_STOPPED)
                assert c.get_worker("w-sync").state == WS.WORKER_STATE_STOPPED
                told = next(e for e in events if e.worker.worker_id == "w-sync")
                assert told.type == WE.WORKER_EVENT_TYPE_STOPPED
                events.close()
                with pytest.raises(NotFoundError):
                    c.report_worker_stopped("no-such-worker")

        await asyncio.to_thread(use)


async def test_a_workers_watch_closed_after_its_client_raises_nothing(live: Cluster) -> None:
    def use() -> None:
        with Client.connect(live.jobs_addr, live.tasks_addr, ROOT_TOKEN) as c:
            events = c.watch_workers()
            assert next(events).type == WE.WORKER_EVENT_TYPE_SNAPSHOT
        events.close()  # the client's close ended the stream already

    await asyncio.to_thread(use)


async def test_watch_hands_on_packed_events_one_by_one(live: Cluster, client: AsyncClient) -> None:
    """The SDK asks for packed events; a watcher that lags gets fewer messages than events
    (the server's counters), and sees exactly the events of a one-per-message stream."""
    job_uuid, start = await finished_job(live)
    plain = await messages_of(live, job_uuid, start, None, job=True)
    events_before, messages_before = watch_counter("events"), watch_counter("messages")
    events = [e async for e in client.watch(job_uuid, after_seq=start)]
    events_sent = watch_counter("events") - events_before
    messages_sent = watch_counter("messages") - messages_before
    assert events == plain and not any(e.more for e in events)
    assert events_sent == len(events) and messages_sent < events_sent


async def test_create_jobs_submits_in_one_call_in_order(live: Cluster, client: AsyncClient) -> None:
    created = await client.create_jobs(
        [
            {"script": "many.py", "parameters": {"i": 0}, "submit_id": "many-0"},
            {"script": "many.py", "parameters": {"i": 1}, "priority": 3},
            {"script": "many.py", "parameters": {"i": 0}, "submit_id": "many-0"},
            {"script": "many.py", "parameters": {"i": 1}, "allow_duplicate": True},
        ]
    )
    assert [json_format.MessageToDict(j.script_parameters)["i"] for j in created] == [0, 1, 0, 1]
    assert created[2].uuid == created[0].uuid and created[3].uuid != created[1].uuid
    assert created[1].priority == 3
    with pytest.raises(InvalidArgumentError) as refused:
        await client.create_jobs([{"script": "ok.py"}, {"script": ""}])
    assert refused.value.field == "requests[1].job.script"

    def use() -> list[str]:
        with Client.connect(live.jobs_addr, live.tasks_addr, ROOT_TOKEN) as c:
            return [j.script for j in c.create_jobs([{"script": "s1.py"}, {"script": "s2.py"}])]

    assert await asyncio.to_thread(use) == ["s1.py", "s2.py"]


def test_the_blocking_client_s_methods_take_the_async_ones_arguments() -> None:
    """Same names, kinds and defaults (watch's on_break among them)."""

    def parameters(method: Callable[..., object]) -> list[tuple[str, object, object]]:
        found = inspect.signature(method).parameters.values()
        return [(p.name, p.kind, p.default) for p in found]

    for name in {n for n in dir(Client) if not n.startswith("_")}:
        assert parameters(getattr(Client, name)) == parameters(getattr(AsyncClient, name)), name


async def test_the_blocking_watch_tells_on_break_of_a_lost_server(sqlite_url: str) -> None:
    """The server goes away under a blocking watch: on_break hears why, then the watch
    gives up after reconnect_for."""
    from tests.conftest import start_cluster

    cluster = await start_cluster(sqlite_url, root_token=ROOT_TOKEN)
    try:
        async with AsyncClient.connect(cluster.jobs_addr, cluster.tasks_addr, ROOT_TOKEN) as c:
            job = await c.submit("hash.py", {"on_break": 1})
        heard: list[JobtaskError | None] = []
        watching = threading.Event()
        stopped = threading.Event()

        def use() -> None:
            with Client.connect(cluster.jobs_addr, cluster.tasks_addr, ROOT_TOKEN) as client:
                events = client.watch(job.uuid, reconnect_for=1.0, on_break=heard.append)
                assert next(events).type == W.WATCH_EVENT_TYPE_SNAPSHOT
                watching.set()
                stopped.wait(30)
                with pytest.raises(UnavailableError):
                    for _ in events:
                        pass

        used = asyncio.create_task(asyncio.to_thread(use))
        await eventually(lambda: watching.is_set() or used.done())
        if used.done():
            used.result()  # (what stopped it)
    finally:
        await cluster.close()
        stopped.set()
    await asyncio.wait_for(used, 60)
    assert heard and isinstance(heard[0], UnavailableError), heard


# A script with blocking clients: each closed while its watch is still open.
CLOSED_WITH_A_WATCH_OPEN = """
import sys
from jobtask.sdk import Client

jobs, tasks, token, job = sys.argv[1:]
for _ in range(3):  # (a later client's loop handles what an earlier one left behind)
    client = Client.connect(jobs, tasks, token)
    events = client.watch(job)
    next(events)
    client.close()
print(list(events))
"""


async def test_closing_a_blocking_client_ends_its_open_watch_quietly(sqlite_url: str) -> None:
    """Its iterator ends; nothing is left for gRPC to hand to the closed event loop (which
    it logged as "Event loop is closed")."""
    async with running_cluster(sqlite_url, root_token=ROOT_TOKEN) as cluster:
        async with AsyncClient.connect(cluster.jobs_addr, cluster.tasks_addr, ROOT_TOKEN) as c:
            job = await c.submit("hash.py", {"closed": 1})
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLOSED_WITH_A_WATCH_OPEN,
            cluster.jobs_addr,
            cluster.tasks_addr,
            ROOT_TOKEN,
            job.uuid,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    said = err.decode()
    assert "Event loop is closed" not in said, said[-3000:]
    assert proc.returncode == 0, said[-3000:]
    assert out.decode().split() == ["[]"]
    assert "Traceback" not in said, said[-3000:]


async def test_the_sdk_s_own_argument_checks_raise_invalid_argument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the server's checks do (and still ValueErrors), naming the argument; no call is
    made (the address answers nothing)."""
    monkeypatch.delenv("TASK_UUID", raising=False)
    monkeypatch.delenv("JOB_UUID", raising=False)
    async with AsyncClient.connect("127.0.0.1:1", "127.0.0.1:1") as c:
        calls: list[tuple[Callable[[], Awaitable[object]], str]] = [
            (lambda: c.submit("hash.py", constraints={"max_ram": 1}), "constraints"),
            (lambda: c.create_jobs([{"script": "a.py", "constraints": {"x": 1}}]), "constraints"),
            (lambda: c.report_progress(0.5), "uuid"),
            (lambda: c.create_child_task({"n": 1}), "job_uuid"),
        ]
        for call, argument in calls:
            with pytest.raises(InvalidArgumentError) as refused:
                await call()
            assert refused.value.field == argument
            assert isinstance(refused.value, ValueError)
            assert refused.value.status is None
        monkeypatch.setenv("JOB_UUID", "zzzzz-8i9sb-000000000000000")
        with pytest.raises(InvalidArgumentError, match="parent_uuid") as refused:
            await c.create_child_task({"n": 1})
        assert refused.value.field == "parent_uuid"
