"""Many tasks' messages filled in a row (an answer's assignments, updates or created tasks),
each copied from the one filled before it and then changed where its row differs.

The tasks of one answer are mostly siblings -- a claim's, a creation's or a report group's
tasks of one job, written at one `now` -- whose messages differ in a few fields (uuid, href,
etag, qsequence). Building each from its row (convert.task_fields, a constructor call and
fill_task) cost ~75,000 instructions a message; a copy of the last one (upb, in C) and
the differing fields set cost far less. The message is the one convert.task_pb builds
(tests/core/test_task_messages.py: the same bytes, field by field and row by row). The
copying is server/message_copies.py's; this module lists a task's setters."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from jobtask.server.convert import (
    TASK_COPY,
    TASK_STATUS_TO_PB,
    fill_task,
    task_fields,
)
from jobtask.server.message_copies import (
    Kind,
    MessageCopies,
    Setter,
    add_copies,
    constraints_setter,
    make_differ,
    set_etag,
    set_failure,
    status_setter,
    struct_setter,
    uuid_setter,
    with_columns,
)
from jobtask.store.rows import TaskRow
from jobtask.v1 import job_task_pb2

# The message's fields derived from other columns (etag from uuid and version, qsequence
# from id; href from uuid): set with the columns they come from.
_DERIVED = frozenset({"etag", "qsequence"})
# JSON columns whose message is built from their values (a Struct, a FailureReason).
_STRUCTS = frozenset({"parameters", "failure_reason"})


def _set_id(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
    msg.qsequence = task.qsequence


def _setters() -> dict[str, Setter]:
    """The row's attributes a task's message is made of, each with what sets its field(s)."""
    special: dict[str, Setter] = {
        "uuid": uuid_setter("/job_tasks/"),
        "version": set_etag,
        "id": _set_id,
        "status": status_setter(TASK_STATUS_TO_PB),
        "parameters": struct_setter("parameters"),
        "runtime_constraints": constraints_setter("runtime_constraints"),
        "failure_reason": set_failure,
    }
    return with_columns(special, TASK_COPY, TaskRow, _DERIVED)


_SETTERS = _setters()


_TASK = Kind(task_fields, fill_task, make_differ(_SETTERS, _STRUCTS, frozenset({"progress"})))


class TaskMessages(MessageCopies):
    """Fills tasks' messages one after another (message_copies.MessageCopies): for each
    task, in order, `fields(task)`, given to the constructor of the message (or of the
    message that holds it, as its task), then `fill(msg, task)`."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(_TASK)


def _set_kind(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
    msg.kind = "arvados#jobTask"


def _set_uuid(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
    msg.uuid = task.uuid


def _set_href(msg: job_task_pb2.JobTask, task: TaskRow) -> None:
    msg.href = "/job_tasks/" + task.uuid


def _field_setters() -> dict[str, Setter]:
    """Each field of the message with what sets it alone (a select's): _SETTERS's, by field
    name, but the uuid's (which sets href and etag too) and the derived fields' own."""
    out = {name: put for name, put in _SETTERS.items() if name in _FIELDS}
    out.update(kind=_set_kind, uuid=_set_uuid, href=_set_href, etag=set_etag, qsequence=_set_id)
    return out


_FIELDS = frozenset(field.name for field in job_task_pb2.JobTask.DESCRIPTOR.fields)
_BY_FIELD = _field_setters()


class SelectedTasks:
    """Tasks' messages holding only the fields of a `select` (its names checked by the
    caller: parse_select) and `kind`, as Arvados answers a `select` (`@select |= ["kind"]`):
    the fields set one by one, a few calls a task where a whole message's copy and
    differences are dozens. The message is the whole one (TaskMessages') with every other
    field cleared (tests/core/test_task_messages.py)."""

    __slots__ = ("_setters",)

    def __init__(self, select: Iterable[str]) -> None:
        self._setters = tuple(_BY_FIELD[name] for name in dict.fromkeys(["kind", *select]))

    def fill(self, msg: job_task_pb2.JobTask, task: TaskRow) -> None:
        """Sets the selected fields of `msg` (a new message) from the task."""
        for put in self._setters:
            put(msg, task)

    def add(
        self, into: RepeatedCompositeFieldContainer[job_task_pb2.JobTask], tasks: Iterable[TaskRow]
    ) -> None:
        """The tasks' messages added to a repeated field, each built where it is sent."""
        setters = self._setters
        add = into.add
        for task in tasks:
            msg = add()
            for put in setters:
                put(msg, task)


def add_tasks(
    into: RepeatedCompositeFieldContainer[job_task_pb2.JobTask], tasks: Iterable[TaskRow]
) -> None:
    """The tasks' messages added to a repeated field (a response's list), each built where it
    is sent, one after another by TaskMessages."""
    add_copies(into, tasks, TaskMessages())
