"""The one place protobuf messages and store rows meet."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import ListValue, Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp
from jobtask.domain.errors import InvalidArgument
from jobtask.domain.resources import CONSTRAINT_KEYS
from jobtask.domain.scheduling import FailureRule
from jobtask.domain.statuses import JobStatus, TaskStatus
from jobtask.store.rows import JobRow, TaskRow, time_names
from jobtask.v1 import job_pb2, job_task_pb2

JOB_STATUS_TO_PB: dict[JobStatus, job_pb2.JobStatus] = {
    s: cast(job_pb2.JobStatus, job_pb2.JobStatus.Value("JOB_STATUS_" + s.name)) for s in JobStatus
}
JOB_STATUS_FROM_PB = {v: k for k, v in JOB_STATUS_TO_PB.items()}
TASK_STATUS_TO_PB: dict[TaskStatus, job_task_pb2.TaskStatus] = {
    s: cast(job_task_pb2.TaskStatus, job_task_pb2.TaskStatus.Value("TASK_STATUS_" + s.name))
    for s in TaskStatus
}
TASK_STATUS_FROM_PB = {v: k for k, v in TASK_STATUS_TO_PB.items()}


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)


def stamp(ts: Timestamp, value: dt.datetime) -> None:
    """Sets `ts` to `value` (naive means UTC): Timestamp.FromDatetime's result, by integer
    arithmetic (FromDatetime builds a time tuple; every row sent out has a few stamps)."""
    delta = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    ts.seconds = delta.days * 86400 + delta.seconds
    ts.nanos = delta.microseconds * 1000


def timestamp(value: dt.datetime) -> Timestamp:
    ts = Timestamp()
    stamp(ts, value)
    return ts


def struct(value: dict[str, Any] | None) -> Struct:
    s = Struct()
    if value:
        s.update(value)
    return s


def _set(msg: Message, name: str, value: Any) -> None:
    """Sets a field, leaving it unset (null) for None."""
    if value is None:
        return
    if isinstance(value, dt.datetime):
        stamp(getattr(msg, name), value)
    elif isinstance(value, dict):
        getattr(msg, name).CopyFrom(struct(value))
    else:
        setattr(msg, name, value)


JOB_COPY = [
    "uuid",
    "owner_uuid",
    "created_at",
    "modified_at",
    "modified_by_client_uuid",
    "modified_by_user_uuid",
    "etag",
    "submit_id",
    "priority",
    "script",
    "script_version",
    "repository",
    "cancelled_by_client_uuid",
    "cancelled_by_user_uuid",
    "cancelled_at",
    "started_at",
    "finished_at",
    "running",
    "success",
    "is_locked_by_uuid",
    "output",
    "log",
    "state",
]

TASK_COPY = [
    "uuid",
    "owner_uuid",
    "created_at",
    "modified_at",
    "modified_by_client_uuid",
    "modified_by_user_uuid",
    "etag",
    "job_uuid",
    "sequence",
    "qsequence",
    "output",
    "progress",
    "success",
    "created_by_job_task_uuid",
    "failed_count",
    "failed_at",
    "failed_log",
    "log",
    "started_at",
    "finished_at",
    "worker_id",
    "node_name",
    "attempt",
    "runnable_after",
]


def failure_pb(value: dict[str, Any]) -> job_pb2.FailureReason:
    msg = job_pb2.FailureReason(
        rule=cast(
            job_pb2.FailureRule,
            job_pb2.FailureRule.Value("FAILURE_RULE_" + FailureRule(value["rule"]).name),
        ),
        message=value.get("message") or "",
        log_tail=value.get("log_tail") or "",
        task_uuid=value.get("task_uuid") or "",
    )
    for name in ("exit_code", "signal", "worker_id"):
        _set(msg, name, value.get(name))
    return msg


def blocklist_pb(value: list[dict[str, Any]] | None) -> list[job_pb2.BlocklistEntry]:
    entries = []
    for item in value or ():
        entry = job_pb2.BlocklistEntry(
            worker_id=item["worker_id"], failed_tasks=int(item["failed_tasks"])
        )
        entry.added_at.CopyFrom(timestamp(dt.datetime.fromisoformat(item["added_at"])))
        entries.append(entry)
    return entries


def time_fields(value: dt.datetime) -> dict[str, int]:
    """A Timestamp's fields, as a constructor takes them: stamp's values (protobuf's own
    datetime conversion in a constructor costs several times more)."""
    delta = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    return {"seconds": delta.days * 86400 + delta.seconds, "nanos": delta.microseconds * 1000}


def _copier(
    cls: type, names: list[str]
) -> tuple[Callable[[Any], dict[str, Any]], Callable[[Message, Any], None]]:
    """Two functions of a row, unrolled field by field (as rows._maker: a loop over the
    names cost twice as much): `copied(row)`, its copied fields but times, by name, as a
    constructor takes them (None leaves a field unset: null), and `stamped(msg, row)`,
    which sets its times in the built message (stamp's values). A time set in its
    sub-message costs ~0.4 us less than one given to the constructor as a dict of its
    fields (time_fields), which the constructor turns into a message."""
    times = time_names(cls)
    lines = ["def copied(row):", "    out = {}"]
    for name in names:
        if name not in times:
            lines.append(f"    v = row.{name}")
            lines.append("    if v is not None:")
            lines.append(f"        out[{name!r}] = v")
    lines.append("    return out")
    lines.append("def stamped(msg, row):")
    for name in names:
        if name in times:
            lines.append(f"    v = row.{name}")
            lines.append("    if v is not None:")
            lines.append("        d = v - (_NAIVE_EPOCH if v.tzinfo is None else _EPOCH)")
            lines.append(f"        ts = msg.{name}")
            lines.append("        ts.seconds = d.days * 86400 + d.seconds")
            lines.append("        ts.nanos = d.microseconds * 1000")
    scope: dict[str, Any] = {"_NAIVE_EPOCH": _NAIVE_EPOCH, "_EPOCH": _EPOCH}
    exec("\n".join(lines) + "\n", scope)  # built from the row class's own field names
    copied: Callable[[Any], dict[str, Any]] = scope["copied"]
    stamped: Callable[[Message, Any], None] = scope["stamped"]
    return copied, stamped


_job_copied, _job_stamped = _copier(JobRow, JOB_COPY)
_task_copied, _task_stamped = _copier(TaskRow, TASK_COPY)


def constraint_ints(value: dict[str, Any] | None) -> dict[str, int]:
    """The runtime constraints the API knows, as integers (a RuntimeConstraints' fields)."""
    if not value:
        return {}
    return {key: int(value[key]) for key in CONSTRAINT_KEYS if value.get(key) is not None}


def _struct(msg: Struct, value: dict[str, Any] | None) -> None:
    """struct(value) set in `msg` (present even when empty; filled in place: a dict given
    to a constructor costs more)."""
    if value:
        msg.update(value)
    else:
        msg.SetInParent()


def job_fields(job: JobRow) -> dict[str, Any]:
    """The job's message as a constructor's arguments (nested messages as dicts: set in C,
    in one call), all but what fill_job sets."""
    fields = _job_copied(job)
    rc = constraint_ints(job.runtime_constraints)
    fields.update(
        kind="arvados#job",
        href=f"/jobs/{job.uuid}",
        script_name=job.script,
        runtime_constraints=rc,
        resource_limits=rc,
        tasks_summary=job.tasks_summary,
        status=JOB_STATUS_TO_PB[job.status],
    )
    return fields


def fill_job(msg: job_pb2.Job, job: JobRow) -> None:
    """The rest of a job's message built from job_fields: its times, structs and lists."""
    _job_stamped(msg, job)
    _struct(msg.script_parameters, job.script_parameters)
    if job.failure_reason:
        msg.failure_reason.CopyFrom(failure_pb(job.failure_reason))
    if job.blocklist:
        msg.blocklist.extend(blocklist_pb(job.blocklist))


def task_fields(task: TaskRow) -> dict[str, Any]:
    """The task's message as a constructor's arguments (see job_fields)."""
    fields = _task_copied(task)
    fields.update(
        kind="arvados#jobTask",
        href=f"/job_tasks/{task.uuid}",
        runtime_constraints=constraint_ints(task.runtime_constraints),
        status=TASK_STATUS_TO_PB[task.status],
    )
    return fields


def fill_task(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
    """The rest of a task's message built from task_fields (see fill_job)."""
    _task_stamped(msg, task)
    _struct(msg.parameters, task.parameters)
    if task.failure_reason:
        msg.failure_reason.CopyFrom(failure_pb(task.failure_reason))


def job_pb(job: JobRow) -> job_pb2.Job:
    """The job as its message, built by one constructor call and filled in place
    (tests/core/test_convert.py: the message a field by field copy makes)."""
    msg = job_pb2.Job(**job_fields(job))
    fill_job(msg, job)
    return msg


def task_pb(task: TaskRow) -> job_task_pb2.JobTask:
    """The task as its message (see job_pb)."""
    msg = job_task_pb2.JobTask(**task_fields(task))
    fill_task(msg, task)
    return msg


def _plain(value: Value) -> Any:
    """A Value as json_format.MessageToDict gives it (a string, a float, a bool, None, a
    dict or a list; ValueError for NaN or an infinity), in a few attribute reads: the
    generic printer took ~4 us for an empty Struct and ~12 us for two parameters, and
    every created task and job sends one (tests/core/test_convert.py: the same values)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if math.isinf(number) or math.isnan(number):
            raise ValueError("Fail to serialize a non-finite number_value")
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return plain_struct(value.struct_value)
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    return None  # null_value, or no kind set


def plain_struct(value: Struct) -> dict[str, Any]:
    """json_format.MessageToDict(value) of a Struct (see _plain)."""
    fields = value.fields
    if not fields:  # (most: iterating even an empty map costs a microsecond or two)
        return {}
    return {key: _plain(item) for key, item in fields.items()}


def _field_value(msg: Message, name: str) -> Any:
    """A field of a resource message as a plain Python value (None when unset)."""
    field = msg.DESCRIPTOR.fields_by_name[name]
    if field.is_repeated and field.message_type is not None:
        # Repeated messages (a job's blocklist): a list of plain dicts, None when empty.
        items = [
            json_format.MessageToDict(item, preserving_proto_field_name=True)
            for item in getattr(msg, name)
        ]
        return items or None
    if field.message_type is not None:
        if not msg.HasField(name):
            return None
        sub = getattr(msg, name)
        if isinstance(sub, Timestamp):
            return sub.ToDatetime(tzinfo=dt.UTC)
        if isinstance(sub, Struct | ListValue):
            try:
                if isinstance(sub, Struct):
                    return plain_struct(sub)
                return [_plain(item) for item in sub.values]
            except ValueError:  # NaN or an infinity: JSON has neither
                raise InvalidArgument(name, "numbers must be finite (no NaN or Infinity)") from None
        if field.message_type.name == "RuntimeConstraints":
            return {k: getattr(sub, k) for k in CONSTRAINT_KEYS if sub.HasField(k)}
        # Zeros included: a record sent back must compare equal to the one it was read from.
        return json_format.MessageToDict(
            sub, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    if field.has_presence and not msg.HasField(name):
        return None
    value = getattr(msg, name)
    if field.enum_type is not None:
        if value == 0:
            return None
        table = JOB_STATUS_FROM_PB if field.enum_type.name == "JobStatus" else TASK_STATUS_FROM_PB
        return table[value].value
    return value


def changes_from(msg: Message, paths: Iterable[str] | None) -> dict[str, Any]:
    """The attributes a caller sent: the update_mask's paths, or else the fields set."""
    if paths:
        names = []
        for path in paths:
            top = path.split(".")[0]
            if top not in msg.DESCRIPTOR.fields_by_name:
                raise InvalidArgument("update_mask", f"unknown attribute {top!r}")
            if top not in names:
                names.append(top)
        return {name: _field_value(msg, name) for name in names}
    # The fields set: a plain scalar's value is the one listed (set, so present).
    return {
        field.name: (
            value
            if field.message_type is None and field.enum_type is None
            else _field_value(msg, field.name)
        )
        for field, value in msg.ListFields()
    }


def list_value(value: ListValue) -> list[Any]:
    return [_plain(item) for item in value.values]
