"""How the CLI shows messages: JSON for scripts (proto field names), short lines for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from google.protobuf.message import Message
from jobtask.sdk.messages import to_dict
from jobtask.v1 import job_pb2, job_task_pb2


def as_json(message: Message) -> Any:
    """A message as the REST gateway answers it (Arvados's JSON: every attribute, statuses
    as `queued`, whole numbers as numbers), so `--json` and curl agree on every spelling."""
    from jobtask.gateway.rendering import render_value

    return render_value(message)


def print_json(
    value: Message | Sequence[Message] | dict[str, Any], out: TextIO = sys.stdout
) -> None:
    if isinstance(value, Message):
        data: Any = as_json(value)
    elif isinstance(value, dict):
        data = value
    else:
        data = [as_json(m) for m in value]
    json.dump(data, out, indent=2, sort_keys=False)
    out.write("\n")


def job_status(status: int) -> str:
    return job_pb2.JobStatus.Name(status).removeprefix("JOB_STATUS_").lower().replace("_", "-")


def task_status(status: int) -> str:
    return (
        job_task_pb2.TaskStatus.Name(status).removeprefix("TASK_STATUS_").lower().replace("_", "-")
    )


def percent(fraction: float) -> str:
    return f"{min(max(fraction, 0.0), 1.0) * 100:5.1f}%"


def bar(fraction: float, width: int = 24) -> str:
    """`[######......]`, `width` characters between the brackets."""
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def summary(job: job_pb2.Job) -> str:
    s = job.tasks_summary
    return f"todo {s.todo}, running {s.running}, done {s.done}, failed {s.failed}"


def job_detail(job: job_pb2.Job) -> list[str]:
    lines = [
        f"uuid:        {job.uuid}",
        f"status:      {job_status(job.status)}",
        f"script:      {job.script}" + (f" @ {job.script_version}" if job.script_version else ""),
        f"priority:    {job.priority}",
        f"parameters:  {json.dumps(to_dict(job.script_parameters))}",
        f"tasks:       {summary(job)}",
    ]
    if job.HasField("created_at"):
        lines.append(f"created_at:  {job.created_at.ToJsonString()}")
    if job.HasField("started_at"):
        lines.append(f"started_at:  {job.started_at.ToJsonString()}")
    if job.HasField("finished_at"):
        lines.append(f"finished_at: {job.finished_at.ToJsonString()}")
    if job.HasField("output"):
        lines.append(f"output:      {job.output!r}")
    if job.HasField("failure_reason"):
        lines.append(f"failed:      {failure_text(job.failure_reason)}")
        lines.append(f"  task:      {job.failure_reason.task_uuid}")
        lines.extend(f"  | {line}" for line in job.failure_reason.log_tail.splitlines())
    for entry in job.blocklist:
        lines.append(
            f"blocklisted: {entry.worker_id} (failed {entry.failed_tasks} tasks, "
            f"since {entry.added_at.ToJsonString()})"
        )
    return lines


def task_detail(task: job_task_pb2.JobTask) -> list[str]:
    """A task as `jobtask get` shows it: its fields one a line, as job_detail shows a job
    (its log: `jobtask logs`)."""
    lines = [
        f"uuid:        {task.uuid}",
        f"job:         {task.job_uuid}",
        f"status:      {task_status(task.status)}",
        f"sequence:    {task.sequence}",
        f"parameters:  {json.dumps(to_dict(task.parameters))}",
        f"progress:    {task.progress * 100:.0f}%",
        f"attempt:     {task.attempt}"
        + (f" (failed {task.failed_count})" if task.failed_count else ""),
    ]
    if task.HasField("worker_id"):
        lines.append(f"worker:      {task.worker_id} on {task.node_name}")
    for name in ("created_at", "started_at", "finished_at"):
        if task.HasField(name):
            lines.append(f"{name + ':':<13}{getattr(task, name).ToJsonString()}")
    if task.HasField("success"):
        lines.append(f"success:     {str(task.success).lower()}")
    if task.HasField("output"):
        lines.append(f"output:      {task.output!r}")
    note = task_note(task)
    if note:
        lines.append(f"why:         {note}")
    return lines


def failure_text(reason: job_pb2.FailureReason) -> str:
    """`<rule>: <message> (exit code N | signal N)`."""
    rule = job_pb2.FailureRule.Name(reason.rule).removeprefix("FAILURE_RULE_")
    text = f"{rule.lower().replace('_', '-')}: {reason.message}"
    if reason.HasField("exit_code"):
        text += f" (exit code {reason.exit_code})"
    elif reason.HasField("signal"):
        text += f" (signal {reason.signal})"
    return text


def task_note(t: job_task_pb2.JobTask) -> str:
    """Why a task failed for good, or when a soft-failed one may run again."""
    if t.HasField("failure_reason"):
        return failure_text(t.failure_reason)
    if t.status == job_task_pb2.TASK_STATUS_SOFT_FAILED and t.HasField("runnable_after"):
        return f"retry after {t.runnable_after.ToJsonString()}"
    return ""


def table(rows: Iterable[Sequence[str]], headers: Sequence[str]) -> list[str]:
    rows = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip(), *(fmt.format(*row).rstrip() for row in rows)]


def job_rows(jobs: Iterable[job_pb2.Job]) -> list[str]:
    return table(
        ((j.uuid, job_status(j.status), str(j.priority), j.script, summary(j)) for j in jobs),
        ("UUID", "STATUS", "PRIORITY", "SCRIPT", "TASKS"),
    )


def task_rows(tasks: Iterable[job_task_pb2.JobTask]) -> list[str]:
    return table(
        (
            (
                t.uuid,
                str(t.sequence),
                task_status(t.status),
                f"{t.progress * 100:.0f}%",
                str(t.failed_count),
                t.node_name if t.HasField("node_name") else "",
                json.dumps(to_dict(t.parameters)),
                task_note(t),
            )
            for t in tasks
        ),
        ("UUID", "SEQ", "STATUS", "PROGRESS", "FAILED", "NODE", "PARAMETERS", "WHY"),
    )
