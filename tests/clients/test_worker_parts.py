"""The worker's pure parts: the report protocol, coalescing, and the scripts directory."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from jobtask.v1 import task_service_pb2
from jobtask.worker.environment import (
    ScriptError,
    command_for,
    parameter_value,
    resolve_script,
)
from jobtask.worker.lease import TaskLease
from jobtask.worker.reports import Outbox, Report, parse_report


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
    message = box.take(7)
    assert (message.seq, message.progress, message.output, message.log) == (
        7,
        0.999,
        "out",
        "a\nb\n",
    )
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
    lease = TaskLease("t", "l", 10.0, on_instruction=lambda *_: None, poke=asyncio.Event())
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
    from jobtask.worker.session import SessionLink

    link = SessionLink(client=None, info=lambda: task_service_pb2.WorkerInfo(), on_assignment=print)  # type: ignore[arg-type]
    assignment = task_service_pb2.TaskAssignment(
        task={"uuid": "t"}, lease={"lease_id": "l", "ttl": {"seconds": 30}}
    )
    lease = link.lease(assignment, on_instruction=lambda *_: None, poke=asyncio.Event())

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
