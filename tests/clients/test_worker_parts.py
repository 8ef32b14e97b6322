"""The worker's pure parts: the report protocol, coalescing, and the scripts directory."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
from jobtask.v1 import job_task_pb2, task_service_pb2
from jobtask.worker.environment import (
    ScriptError,
    command_for,
    parameter_value,
    resolve_script,
)
from jobtask.worker.lease import TaskLease
from jobtask.worker.reports import Outbox, Report, parse_report

from tests.polling import DEADLINE, eventually


def test_report_lines() -> None:
    assert parse_report("progress 0.25\n") == Report(progress=0.25)
    assert parse_report("output ./x 0:3:a.txt  \n") == Report(output="./x 0:3:a.txt  ")
    assert parse_report('output_json "a\\nb\\n"\n') == Report(output="a\nb\n")
    assert parse_report("success true") == Report(success=True)
    assert parse_report("success FALSE") == Report(success=False)
    assert parse_report("   \n") is None
    assert parse_report("# a comment") is None
    for bad in ("progress 2", "progress nan", "progress x", "success maybe", "output_json 3", "hi"):
        with pytest.raises(ValueError):
            parse_report(bad)


def test_outbox_keeps_the_latest_progress_and_every_log_chunk() -> None:
    box = Outbox()
    assert box.empty()
    for i in range(1000):
        box.apply(Report(progress=i / 1000))
    box.add_log("a\n")
    box.add_log("b\n")
    assert not box.urgent
    box.apply(Report(output="out"))
    assert box.urgent
    message = box.take()  # type: ignore[unreachable]  # mypy keeps `not box.urgent`
    assert (message.progress, message.output, message.log) == (0.999, "out", "a\nb\n")
    assert not message.HasField("success")
    assert box.empty()


def test_parameters_as_environment_values() -> None:
    assert parameter_value("raw text") == "raw text"
    assert parameter_value(3.0) == "3"
    assert parameter_value(2.5) == "2.5"
    assert parameter_value({"a": [1.0, True, None]}) == '{"a":[1,true,null]}'


def test_scripts_stay_inside_their_directory(tmp_path: Path) -> None:
    scripts = tmp_path / "crunch_scripts"
    scripts.mkdir()
    (scripts / "ok.py").write_text("print('ok')\n")
    (scripts / "sub").mkdir()
    (scripts / "sub" / "tool").write_text("#!/bin/sh\n")
    os.chmod(scripts / "sub" / "tool", 0o755)
    (scripts / "plain").write_text("not executable\n")
    (tmp_path / "secret.py").write_text("")
    (scripts / "escape.py").symlink_to(tmp_path / "secret.py")

    assert resolve_script(scripts, "ok.py") == (scripts / "ok.py").resolve()
    assert resolve_script(scripts, "sub/tool") == (scripts / "sub" / "tool").resolve()
    for name in (
        "../secret.py",
        str(tmp_path / "secret.py"),
        "sub/../../secret.py",
        "escape.py",
        "",
    ):
        with pytest.raises(ScriptError) as refused:
            resolve_script(scripts, name)
        assert refused.value.permanent, name
    for name in ("missing.py", "plain"):
        with pytest.raises(ScriptError) as absent:
            resolve_script(scripts, name)
        assert not absent.value.permanent, name


def test_an_executable_script_with_a_shebang_runs_as_itself(tmp_path: Path) -> None:
    own = tmp_path / "own.py"
    own.write_text("#!/opt/other/python\nprint('x')\n")
    own.chmod(0o755)
    bare = tmp_path / "bare.py"
    bare.write_text("print('x')\n")
    bare.chmod(0o755)
    unmarked = tmp_path / "unmarked.py"
    unmarked.write_text("#!/opt/other/python\nprint('x')\n")
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert command_for(own) == [str(own)]
    assert command_for(tool) == [str(tool)]
    # The worker's interpreter is the fallback: no `#!` line, or not executable.
    assert command_for(bare) == [sys.executable, str(bare)]
    assert command_for(unmarked) == [sys.executable, str(unmarked)]


async def test_a_renewal_is_dated_by_when_its_message_was_sent() -> None:
    """The lease watchdog's clock: an acknowledgement that arrives late renews the lease
    as of when the acknowledged report was sent (the server renewed no earlier), so the
    worker kills its process before the server could reap the lease."""
    lease = TaskLease("t", "l", 10.0, on_instruction=lambda *_: None, on_news=lambda: None)
    report = task_service_pb2.RunTaskRequest(progress=0.5)
    lease._number(report)
    sent = lease._sent_at[report.seq]
    await asyncio.sleep(0.05)  # the answer comes later
    lease.receive(task_service_pb2.RunTaskResponse(acked_seq=report.seq))
    assert lease.renewed_at == sent
    # An answer that acknowledges nothing new (a cancel, say) renews nothing.
    before = lease.renewed_at
    lease.receive(task_service_pb2.RunTaskResponse(acked_seq=report.seq))
    assert lease.renewed_at == before


class _Answers:
    """A session call's answers, as the server sent them (SessionLink._read reads them)."""

    def __init__(self, *answers: task_service_pb2.WorkerSessionResponse) -> None:
        self.answers = list(answers)

    async def read(self) -> object:
        import grpc

        return self.answers.pop(0) if self.answers else grpc.aio.EOF  # type: ignore[attr-defined]


async def test_heartbeats_answered_together_do_not_date_later_renewals_too_early() -> None:
    """The server answers heartbeats that arrived while it was busy once, together. The
    renewal is dated by the oldest of them, and the others are forgotten: the next beat's
    answer is dated by that beat, not by one the server had already answered."""
    from jobtask.worker.session import SessionLink, grant_of

    link = SessionLink(client=None, info=lambda: task_service_pb2.WorkerInfo(), on_assignment=print)  # type: ignore[arg-type]
    assignment = task_service_pb2.TaskAssignment(
        task={"uuid": "t"}, lease={"lease_id": "l", "ttl": {"seconds": 30}}
    )
    lease = link.lease(
        "t",
        grant_of(assignment, time.monotonic()),
        on_instruction=lambda *_: None,
        on_news=lambda: None,
    )

    def answer() -> task_service_pb2.WorkerSessionResponse:
        update = task_service_pb2.TaskUpdate(task_uuid="t", lease={"lease_id": "l"})
        return task_service_pb2.WorkerSessionResponse(updates=[update], heartbeat_acked=True)

    t = lease.renewed_at  # (the grant)
    link._beats.extend([t + 10, t + 20])  # two beats sent; the server merged them
    await link._read(_Answers(answer()))
    assert lease.renewed_at == t + 10
    link._beats.append(t + 30)  # the next beat
    await link._read(_Answers(answer()))
    assert lease.renewed_at == t + 30  # not t + 20, a beat the server had already answered


class _Call:
    """A session call's sending side, as SessionLink._send_until_closed uses it."""

    def __init__(self) -> None:
        self.sent: list[task_service_pb2.WorkerSessionRequest] = []
        self.done = False

    async def write(self, message: task_service_pb2.WorkerSessionRequest) -> None:
        self.sent.append(message)

    async def done_writing(self) -> None:
        self.done = True


async def test_a_closing_session_ends_as_its_last_lease_is_over() -> None:
    """A function's run ends its task as its exit is queued, so the worker may close its
    session while decisions are still to come: the session ends as the last lease is
    over, not a heartbeat interval later."""
    from jobtask.worker.session import SessionLink, grant_of

    link = SessionLink(client=None, info=task_service_pb2.WorkerInfo, on_assignment=print)  # type: ignore[arg-type]
    link.ttl = 3600.0  # the next heartbeat is far away
    assignment = task_service_pb2.TaskAssignment(
        task={"uuid": "t"}, lease={"lease_id": "l", "ttl": {"seconds": 3600}}
    )
    lease = link.lease(
        "t",
        grant_of(assignment, time.monotonic()),
        on_instruction=lambda *_: None,
        on_news=lambda: None,
    )
    call = link._call = _Call()
    reader = asyncio.create_task(asyncio.Event().wait())  # hears nothing
    await link.close()
    sending = asyncio.create_task(link._send_until_closed(reader, asyncio.Event()))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert not sending.done()  # a decision is still to come
    lease.forget()  # the decision came
    await asyncio.wait_for(sending, DEADLINE)
    assert call.done
    reader.cancel()


async def test_a_session_sends_its_reports_in_order_in_messages_of_at_most_max_reports() -> None:
    """Reports made in the next message (new_report) and copied into it (enqueue) go in the
    order they were queued, MAX_REPORTS a message at most; none is added to a message
    once it is being sent."""
    from jobtask.worker.session import MAX_REPORTS, SessionLink

    link = SessionLink(client=None, info=task_service_pb2.WorkerInfo, on_assignment=print)  # type: ignore[arg-type]
    for n in range(MAX_REPORTS + 1):
        if n % 2:
            link.new_report().seq = n
        else:
            link.enqueue(task_service_pb2.RunTaskRequest(seq=n))
    call = link._call = _Call()
    reader = asyncio.create_task(asyncio.Event().wait())  # hears nothing
    sending = asyncio.create_task(link._send_until_closed(reader, asyncio.Event()))  # type: ignore[arg-type]
    await eventually(lambda: len(call.sent) == 2)
    link.new_report().seq = MAX_REPORTS + 1  # after the last message was sent: a new one
    await eventually(lambda: len(call.sent) == 3)
    assert [len(m.reports) for m in call.sent] == [MAX_REPORTS, 1, 1]
    assert [r.seq for m in call.sent for r in m.reports] == list(range(MAX_REPORTS + 2))
    assert not link.queued()
    sending.cancel()
    reader.cancel()


def _run_on_a_link(
    tmp_path: Path, fn: Any, *, ttl: float = 30.0
) -> tuple[Any, Any, task_service_pb2.TaskAssignment]:
    """A CarriedRun of the function `fn` on a SessionLink that is not connected: what the
    run sends stays in the link's queue, and the test plays the server's part."""
    from jobtask.sdk.config import ClientConfig
    from jobtask.worker import WorkerConfig
    from jobtask.worker.carried import CarriedRun
    from jobtask.worker.session import SessionLink, grant_of

    config = WorkerConfig(
        client=ClientConfig("127.0.0.1:1", "127.0.0.1:1", "-"),
        scripts_dir=tmp_path,
        node_name="parts",
        worker_id="parts-1",
        work_root=tmp_path,
    )
    link = SessionLink(client=None, info=task_service_pb2.WorkerInfo, on_assignment=print)  # type: ignore[arg-type]
    assignment = task_service_pb2.TaskAssignment(
        task={"uuid": "zzzzz-ot0gb-000000000000001"},
        job={"uuid": "zzzzz-8i9sb-000000000000001", "script": "fn"},
        lease={"lease_id": "l1", "ttl": {"seconds": int(ttl), "nanos": int(ttl % 1 * 1e9)}},
    )
    run = CarriedRun(config, assignment, 0, link, grant_of(assignment, time.monotonic()), fn)
    return run, link, assignment


async def test_a_short_task_is_reported_whole_in_one_message(tmp_path: Path) -> None:
    """A task that ends before its first log flush is due goes up as one report: its log
    (the worker's notes and its own), progress, success, output and exit together."""

    async def fn(ctx: Any) -> str:
        ctx.log("hello")
        return "out\n"

    run, link, assignment = _run_on_a_link(tmp_path, fn)
    running = asyncio.create_task(run.run())
    await eventually(lambda: link.queued())
    await asyncio.sleep(0.01)  # anything else the run would send goes out now too
    (report,) = link.queued()
    assert (report.task_uuid, report.lease_id, report.seq) == (assignment.task.uuid, "l1", 1)
    assert report.HasField("exit_code") and report.exit_code == 0
    assert (report.progress, report.success, report.output) == (1.0, True, "out\n")
    assert "attempt 0 on parts" in report.log and "hello\n" in report.log
    assert report.log.index("hello\n") < report.log.index("attempt 0 ended: exit code 0")
    # The server's answer decides the task.
    update = task_service_pb2.TaskUpdate(
        task_uuid=assignment.task.uuid, acked_seq=1, lease={"lease_id": "l1"}
    )
    update.task.uuid = assignment.task.uuid
    update.task.status = job_task_pb2.TASK_STATUS_COMPLETED
    link.leases[assignment.task.uuid].receive(update)
    decided = await asyncio.wait_for(running, DEADLINE)
    assert decided is not None and decided.status == job_task_pb2.TASK_STATUS_COMPLETED


async def test_a_function_on_the_session_runs_in_its_runs_own_task(tmp_path: Path) -> None:
    """A function the session carries runs in the task that runs it, and no other task is
    made for it: the worker's cost per short task is one asyncio task (a second, and the
    wake-ups between the two, were most of it)."""
    seen: list[tuple[asyncio.Task[Any] | None, int]] = []

    async def fn(ctx: Any) -> None:
        seen.append((asyncio.current_task(), len(asyncio.all_tasks())))

    run, link, assignment = _run_on_a_link(tmp_path, fn)
    before = len(asyncio.all_tasks())
    running = asyncio.create_task(run.run())
    await eventually(lambda: link.queued())
    assert seen == [(running, before + 1)]
    update = task_service_pb2.TaskUpdate(
        task_uuid=assignment.task.uuid, acked_seq=1, lease={"lease_id": "l1"}
    )
    update.task.status = job_task_pb2.TASK_STATUS_COMPLETED
    link.leases[assignment.task.uuid].receive(update)
    assert await asyncio.wait_for(running, DEADLINE) is not None


async def test_a_function_run_ends_at_its_exit_and_the_decision_settles_it(
    tmp_path: Path,
) -> None:
    """The worker's task for a function on the session ends as the exit is queued; the
    server's answer settles the run later, by callback, once (no task waits for it)."""

    async def fn(ctx: Any) -> None:
        ctx.progress(0.5)

    run, link, assignment = _run_on_a_link(tmp_path, fn)
    heard: list[job_task_pb2.JobTask | None] = []
    await asyncio.wait_for(run.carry(lambda _, decided: heard.append(decided)), DEADLINE)
    (report,) = link.queued()
    assert report.HasField("exit_code") and heard == []
    assert assignment.task.uuid in link.leases
    update = task_service_pb2.TaskUpdate(
        task_uuid=assignment.task.uuid, acked_seq=1, lease={"lease_id": "l1"}
    )
    update.task.status = job_task_pb2.TASK_STATUS_COMPLETED
    lease = link.leases[assignment.task.uuid]
    lease.receive(update)
    lease.receive(update)  # heard once
    assert [t.status if t else None for t in heard] == [job_task_pb2.TASK_STATUS_COMPLETED]
    assert not link.leases


async def test_a_function_runs_slot_is_freed_as_its_exit_is_queued(tmp_path: Path) -> None:
    """The function is over once its exit is queued: its run frees its slot then (the
    credit travels with the exit, and the server's answer brings the decision and the
    slot's next task together), before the decision, which it hears later, once."""

    async def fn(ctx: Any) -> None:
        ctx.progress(0.5)

    run, link, assignment = _run_on_a_link(tmp_path, fn)
    events: list[str] = []

    def freed(_: Any) -> None:
        (report,) = link.queued()  # the exit is queued already
        events.append(f"freed, exit {report.exit_code}")

    over = lambda _, decided: events.append(f"decided {decided.status}")  # noqa: E731
    await asyncio.wait_for(run.carry(over, freed=freed), DEADLINE)
    assert events == ["freed, exit 0"]
    update = task_service_pb2.TaskUpdate(
        task_uuid=assignment.task.uuid, acked_seq=1, lease={"lease_id": "l1"}
    )
    update.task.status = job_task_pb2.TASK_STATUS_COMPLETED
    link.leases[assignment.task.uuid].receive(update)
    assert events == ["freed, exit 0", f"decided {job_task_pb2.TASK_STATUS_COMPLETED}"]


async def test_a_run_whose_lease_is_lost_frees_its_slot_only_as_it_is_over(
    tmp_path: Path,
) -> None:
    """No exit goes up for a lease that is gone: the run is over at once, and its slot is
    freed by `over` alone (freed is for a run whose decision is still to come)."""
    lost = asyncio.Event()

    async def fn(ctx: Any) -> None:
        await lost.wait()

    run, link, assignment = _run_on_a_link(tmp_path, fn)
    events: list[str] = []
    carrying = asyncio.create_task(
        run.carry(
            lambda _, decided: events.append(f"over {decided}"),
            freed=lambda _: events.append("freed"),
        )
    )
    await asyncio.sleep(0)
    link.leases[assignment.task.uuid].lost_reason = "gone"
    lost.set()
    await asyncio.wait_for(carrying, DEADLINE)
    assert events == ["over None"]
    assert not link.queued()


class _Session(_Call):
    """A session call both ways: writes wait while `paused` is clear; `answer` queues what
    the server sends."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = asyncio.Event()
        self.paused.set()
        self.down: asyncio.Queue[Any] = asyncio.Queue()

    async def write(self, message: task_service_pb2.WorkerSessionRequest) -> None:
        await self.paused.wait()
        self.sent.append(message)

    async def read(self) -> Any:
        await asyncio.sleep(0)  # (gRPC's read completes on a later turn of the loop)
        return await self.down.get()

    def cancel(self) -> None:
        pass


def _assignments(*numbers: int) -> task_service_pb2.WorkerSessionResponse:
    response = task_service_pb2.WorkerSessionResponse()
    for n in numbers:
        response.assignments.add(task={"uuid": f"t{n}"}, lease={"lease_id": f"l{n}"})
    return response


async def test_each_message_of_assignments_is_answered_by_a_message_of_its_own() -> None:
    """Reports and credits of the tasks of one message of assignments go up in a message of
    their own, with that message's credits only, even when the writer was still sending
    when the next assignments came: one message of both groups' credits would be answered
    by one message of their assignments, and the groups would run as one from then (the
    worker and the server waiting for each other in turn)."""
    import grpc
    from jobtask.worker.session import SessionLink

    loop = asyncio.get_running_loop()

    def on_assignment(assignment: Any, grant: Any) -> None:
        def ran() -> None:  # the task runs after the message is read, as a run does
            link.new_report().task_uuid = assignment.task.uuid
            link.credit(1)

        loop.call_soon(ran)

    link = SessionLink(client=None, info=task_service_pb2.WorkerInfo, on_assignment=on_assignment)  # type: ignore[arg-type]
    call = link._call = _Session()
    reader = asyncio.create_task(link._read(call))
    sending = asyncio.create_task(link._send_until_closed(reader, asyncio.Event()))
    link.credit(1)
    await eventually(lambda: call.sent)  # the writer is idle again
    call.paused.clear()
    link.credit(1)  # a write that waits...
    await asyncio.sleep(0.01)
    call.down.put_nowait(_assignments(1, 2))  # ...while two messages of assignments come
    call.down.put_nowait(_assignments(3, 4, 5))
    await eventually(lambda: len(link.queued()) == 5)
    call.paused.set()
    await eventually(lambda: len(call.sent) == 4)
    assert [[r.task_uuid for r in m.reports] for m in call.sent[2:]] == [
        ["t1", "t2"],
        ["t3", "t4", "t5"],
    ]
    assert [m.credits for m in call.sent] == [1, 1, 2, 3]
    call.down.put_nowait(grpc.aio.EOF)  # type: ignore[attr-defined]
    await asyncio.wait_for(reader, DEADLINE)
    sending.cancel()


async def test_a_finished_run_is_freed_without_the_cycle_collector(tmp_path: Path) -> None:
    """Nothing refers back to a run once it is over (its lease and its function called back
    into it): it is freed as its last reference goes, not by the cyclic garbage collector,
    whose passes over thousands of finished runs a second would cost more than the runs."""

    async def fn(ctx: Any) -> None:
        ctx.progress(0.5)

    gc.disable()
    try:
        run, link, assignment = _run_on_a_link(tmp_path, fn)
        running = asyncio.create_task(run.run())
        await eventually(lambda: link.queued())
        update = task_service_pb2.TaskUpdate(
            task_uuid=assignment.task.uuid, acked_seq=1, lease={"lease_id": "l1"}
        )
        update.task.status = job_task_pb2.TASK_STATUS_COMPLETED
        link.leases[assignment.task.uuid].receive(update)
        assert await asyncio.wait_for(running, DEADLINE) is not None
        gone = weakref.ref(run)
        del run, running
        assert gone() is None
    finally:
        gc.enable()


async def test_an_unrenewed_lease_stops_the_function_and_gives_the_task_up(
    tmp_path: Path,
) -> None:
    """The lease watchdog (the session's watch timer): nothing renews the lease, so a margin before
    it could expire the function is stopped at once and the run ends without a decision;
    a function that swallows the cancel is stopped all the same."""
    seen: list[str] = []

    async def stubborn(ctx: Any) -> None:
        seen.append("started")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("cancelled")  # swallowed: the run must end all the same
        seen.append("returned")

    run, link, _ = _run_on_a_link(tmp_path, stubborn, ttl=0.5)
    running = asyncio.create_task(run.run())
    decided = await asyncio.wait_for(asyncio.shield(running), DEADLINE)
    assert decided is None
    assert seen == ["started", "cancelled", "returned"]
    assert run.exit is not None and run.exit.signal == signal.SIGKILL
    assert "lease not renewed in time" in "".join(run.outbox._log)
    assert not link.queued()  # no exit reported for a lease that is gone
    assert running.cancelling() == 0  # the watchdog took its cancel back


async def test_a_cancel_of_the_worker_itself_is_not_taken_for_a_kill(tmp_path: Path) -> None:
    """The function runs in the run's own task: a cancel from outside (not the worker's
    kill) goes on up, and the run does not report an exit for it."""
    started = asyncio.Event()

    async def waits(ctx: Any) -> None:
        started.set()
        await asyncio.sleep(3600)

    run, link, _ = _run_on_a_link(tmp_path, waits)
    running = asyncio.create_task(run.run())
    await started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert not link.queued()


async def test_a_script_process_closes_its_report_pipe_even_when_its_wait_is_cancelled(
    tmp_path: Path,
) -> None:
    """The report pipe is closed by the wait, whatever ends it: left open, its descriptor
    was closed later by the garbage collector with a ResourceWarning (a CI run failed an
    unrelated test with it)."""
    from jobtask.worker.process import ScriptProcess

    process = await ScriptProcess.start(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        env=dict(os.environ),
        cwd=tmp_path,
        output=lambda _text: None,
        report=lambda _line: None,
    )
    waiting = asyncio.create_task(process.wait())
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    process.kill()
    assert process._report_pipe.is_closing()
    await process.wait()  # the killed script is reaped
