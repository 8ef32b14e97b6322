"""Many jobs' messages filled in a row (BatchCreateJobs' answer, a list's page), each copied
from the one filled before it and then changed where its row differs (message_copies).

A submission's new jobs share owner, script, times and counts; their messages differ in
uuid, href and etag. Built from its row (convert.job_fields, a constructor call and
fill_job) a job's message cost ~30 us of a submitted job's ~200 us of server CPU. The
message is the one convert.job_pb builds (tests/core/test_job_messages.py: the same bytes,
attribute by attribute and row by row)."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from jobtask.server.convert import (
    JOB_COPY,
    JOB_STATUS_TO_PB,
    blocklist_pb,
    fill_job,
    job_fields,
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
from jobtask.store.rows import JobRow, tasks_summary
from jobtask.v1 import job_pb2

# JSON columns whose message is built from their values (a Struct, a FailureReason, the
# blocklist's entries).
_JSON = frozenset({"script_parameters", "failure_reason", "blocklist"})
# The task counts tasks_summary is made of (n_canceled is in none of its four).
_SUMMARY = ("n_queued", "n_active", "n_completed", "n_soft_failed", "n_failed", "n_paused")
# A job's attributes its message is not made of (private, or in no field).
UNSENT = frozenset({"id", "submit_digest", "identity", "n_canceled"})


def _set_script(msg: job_pb2.Job, job: JobRow) -> None:
    msg.script = job.script
    msg.script_name = job.script


def _set_summary(msg: job_pb2.Job, job: JobRow) -> None:
    summary = msg.tasks_summary
    for key, value in tasks_summary(job.__dict__).items():
        setattr(summary, key, value)


def _set_blocklist(msg: job_pb2.Job, job: JobRow) -> None:
    msg.ClearField("blocklist")
    if job.blocklist:
        msg.blocklist.extend(blocklist_pb(job.blocklist))


def _setters() -> dict[str, Setter]:
    """The row's attributes a job's message is made of, each with what sets its field(s)."""
    special: dict[str, Setter] = {
        "uuid": uuid_setter("/jobs/"),
        "version": set_etag,
        "script": _set_script,
        "status": status_setter(JOB_STATUS_TO_PB),
        "script_parameters": struct_setter("script_parameters"),
        "runtime_constraints": constraints_setter("runtime_constraints", "resource_limits"),
        "failure_reason": set_failure,
        "blocklist": _set_blocklist,
        **dict.fromkeys(_SUMMARY, _set_summary),
    }
    # etag: set with uuid and version.
    return with_columns(special, JOB_COPY, JobRow, frozenset({"etag"}))


SETTERS = _setters()
_JOB = Kind(job_fields, fill_job, make_differ(SETTERS, _JSON, frozenset()))


class JobMessages(MessageCopies):
    """Fills jobs' messages one after another (message_copies.MessageCopies)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(_JOB)


def add_jobs(into: RepeatedCompositeFieldContainer[job_pb2.Job], jobs: Iterable[JobRow]) -> None:
    """The jobs' messages added to a repeated field (a response's list), each built where it
    is sent (a message built apart and added is copied whole), one after another."""
    add_copies(into, jobs, JobMessages())
