"""Many tasks' messages filled in a row (an answer's assignments, updates or created tasks),
each copied from the one filled before it and then changed where its row differs.

The tasks of one answer are mostly siblings -- a claim's, a creation's or a report group's
tasks of one job, written at one `now` -- whose messages differ in a few fields (uuid, href,
etag, qsequence). Building each from its row (convert.task_fields, a constructor call and
fill_task) cost ~75,000 instructions a message; a copy of the last one (upb, in C) and
the differing fields set cost far less. The message is the one convert.task_pb builds
(tests/core/test_task_messages.py: the same bytes, field by field and row by row)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from jobtask.server.convert import (
    TASK_COPY,
    TASK_STATUS_TO_PB,
    constraint_ints,
    failure_pb,
    fill_task,
    stamp,
    task_fields,
)
from jobtask.store.rows import TaskRow, time_names
from jobtask.v1 import job_task_pb2

_TIMES = frozenset(time_names(TaskRow))
# The message's fields derived from other columns (etag from uuid and version, qsequence
# from id; href from uuid): set with the columns they come from.
_DERIVED = frozenset({"etag", "qsequence"})
# JSON columns whose message is built from their values (a Struct, a FailureReason).
_STRUCTS = frozenset({"parameters", "failure_reason"})


Setter = Callable[[job_task_pb2.JobTask, TaskRow], None]


def _set_uuid(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
    msg.uuid = task.uuid
    msg.href = f"/job_tasks/{task.uuid}"
    msg.etag = task.etag


def _set_version(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
    msg.etag = task.etag


def _set_id(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
    msg.qsequence = task.qsequence


def _set_status(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
    msg.status = TASK_STATUS_TO_PB[task.status]


def _set_parameters(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
    # Present in every task's message, empty or not (convert._struct).
    msg.parameters.Clear()
    if task.parameters:
        msg.parameters.update(task.parameters)
    else:
        msg.parameters.SetInParent()


def _set_constraints(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
    # Present in every task's message, as task_fields gives it to the constructor.
    msg.runtime_constraints.Clear()
    msg.runtime_constraints.SetInParent()
    for key, value in constraint_ints(task.runtime_constraints).items():
        setattr(msg.runtime_constraints, key, value)


def _set_failure(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
    msg.ClearField("failure_reason")
    if task.failure_reason:
        msg.failure_reason.CopyFrom(failure_pb(task.failure_reason))


def _column(name: str) -> Setter:
    """A copied column's setter: None clears the field (null), a time is stamped in it."""
    is_time = name in _TIMES

    def put(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
        value = getattr(task, name)
        if value is None:
            msg.ClearField(name)
        elif is_time:
            stamp(getattr(msg, name), value)
        else:
            setattr(msg, name, value)

    return put


def _setters() -> dict[str, Setter]:
    """The row's attributes a task's message is made of, each with what sets its field(s)."""
    out: dict[str, Setter] = {
        "uuid": _set_uuid,
        "version": _set_version,
        "id": _set_id,
        "status": _set_status,
        "parameters": _set_parameters,
        "runtime_constraints": _set_constraints,
        "failure_reason": _set_failure,
    }
    for name in TASK_COPY:
        if name in _DERIVED or name in out:
            continue
        out[name] = _column(name)
    return out


_SETTERS = _setters()


def _differ() -> Callable[[TaskRow, TaskRow], list[Setter]]:
    """differ(a, b): the setters of the attributes b holds other than a -- unrolled, a test
    per attribute (a loop over names cost several times as much). Equal but of another
    type (1 and True, 0 and 0.0) counts as other; so does a float's sign (-0.0); a JSON
    column that is not empty always does."""
    lines = ["def differ(a, b):", "    out = []"]
    for name in _SETTERS:
        lines.append(f"    x = a.{name}; y = b.{name}")
        if name in _STRUCTS:
            # Set again unless both are empty: equal dicts may still make other Structs
            # (1 and True are equal, a number_value and a bool_value are not).
            test = "x is not y and (x or y)"
        else:
            test = "x is not y and (x != y or x.__class__ is not y.__class__"
            if name == "progress":
                test += " or _copysign(1.0, x) != _copysign(1.0, y)"
            test += ")"
        lines.append(f"    if {test}:")
        lines.append(f"        out.append(_S[{name!r}])")
    lines.append("    return out")
    scope: dict[str, Any] = {"_S": _SETTERS, "_copysign": math.copysign}
    exec("\n".join(lines) + "\n", scope)  # built from the row class's own field names
    differ: Callable[[TaskRow, TaskRow], list[Setter]] = scope["differ"]
    return differ


_differ_fn = _differ()


class TaskMessages:
    """Fills tasks' messages one after another (see the module's text): the first built
    from its row, each next one a copy of the last, changed where its row differs. For
    each task, in order: `fields(task)`, given to the constructor of the message (or of the
    message that holds it, as its task), then `fill(msg, task)`."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[TaskRow, job_task_pb2.JobTask] | None = None

    def fields(self, task: TaskRow) -> dict[str, Any] | None:
        """The first task's message as a constructor's arguments (convert.task_fields: a
        message built apart and copied in costs more); None for the others, which `fill`
        copies."""
        return task_fields(task) if self._last is None else None

    def fill(self, msg: job_task_pb2.JobTask, task: TaskRow) -> None:
        """Makes `msg` the task's message: built from `fields(task)`, or still empty."""
        last = self._last
        if last is None:
            fill_task(msg, task)
        else:
            msg.CopyFrom(last[1])
            for put in _differ_fn(last[0], task):
                put(msg, task)
        self._last = (task, msg)


def add_tasks(
    into: RepeatedCompositeFieldContainer[job_task_pb2.JobTask], tasks: Iterable[TaskRow]
) -> None:
    """The tasks' messages added to a repeated field (a response's list), each built where it
    is sent (convert.add_jobs), one after another by TaskMessages."""
    messages = TaskMessages()
    add = into.add
    for task in tasks:
        fields = messages.fields(task)
        messages.fill(add() if fields is None else add(**fields), task)
