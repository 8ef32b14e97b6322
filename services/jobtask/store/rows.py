"""Rows as typed, frozen values: a job, a task and a token as the store read (or wrote)
them, built once here, statuses as enums and times in UTC.

A row never changes: a write makes a new one, the old one with the written columns
replaced (`job_after`, `task_after`: dataclasses.replace's result, made by merging the
instance dicts because the hot path makes several per task), so a caller holding the row as
read still has it. The fields are the table's columns, name for name (tests/core/test_rows.py
holds them to the schema); what derives from them (a job's tasks_summary, a task's
qsequence, the etag) is a property.

JobRow and TaskRow keep their fields in an instance dict, not slots: the hot path builds and
copies rows (four of each a one-task job drained), and a dict is filled in one C call
(`_Layout.make`, `_Layout.after`) where slots take one descriptor call a field -- a copy
with its changes costs a seventh as much, a row built from its values about half.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jobtask.domain.statuses import JobStatus, TaskStatus
from jobtask.domain.uuids import base36
from jobtask.store.schema import TASK_STATUS_COUNTS
from sqlalchemy.engine import Row

__all__ = [
    "COUNT_COLUMN",
    "JobRow",
    "TaskRow",
    "TokenRow",
    "etag",
    "job_after",
    "job_from_json",
    "job_of_columns",
    "job_payload",
    "job_row",
    "jobs_and_tasks",
    "task_after",
    "task_from_json",
    "task_of_columns",
    "task_payload",
    "task_row",
    "tasks_summary",
    "to_json",
    "token_row",
    "utc",
]

# Column of the job row that counts tasks in each status.
COUNT_COLUMN: dict[TaskStatus, str] = {
    TaskStatus(name[2:].replace("_", "-")): name for name in TASK_STATUS_COUNTS
}


def tasks_summary(counts: Mapping[str, Any]) -> dict[str, int]:
    """Arvados's tasks_summary (todo, running, done, failed) of a job's task counts (its
    n_* columns, from its row or its feed payload)."""
    return {
        "todo": counts["n_queued"] + counts["n_soft_failed"] + counts["n_paused"],
        "running": counts["n_active"],
        "done": counts["n_completed"],
        "failed": counts["n_failed"],
    }


@functools.lru_cache(maxsize=8192)
def etag(uuid: str, version: int) -> str:
    """Changes whenever the object changes (Arvados: a base-36 MD5). Cached: a job's row
    is turned into a resource several times per task write at the same version."""
    return base36(int.from_bytes(hashlib.md5(f"{uuid}:{version}".encode()).digest(), "big"))


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@dataclass(frozen=True)
class JobRow:
    id: int
    uuid: str
    owner_uuid: str
    created_at: dt.datetime
    modified_at: dt.datetime
    modified_by_client_uuid: str | None
    modified_by_user_uuid: str | None
    version: int
    submit_id: str | None
    submit_digest: str | None
    identity: str
    priority: int
    script: str
    script_parameters: dict[str, Any]
    script_version: str
    repository: str | None
    runtime_constraints: dict[str, Any]
    status: JobStatus
    state: str
    running: bool
    success: bool | None
    cancelled_by_client_uuid: str | None
    cancelled_by_user_uuid: str | None
    cancelled_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    is_locked_by_uuid: str | None
    output: str | None
    log: str | None
    n_queued: int
    n_active: int
    n_completed: int
    n_soft_failed: int
    n_failed: int
    n_canceled: int
    n_paused: int
    failure_reason: dict[str, Any] | None
    blocklist: list[dict[str, Any]] | None

    @property
    def counts(self) -> dict[TaskStatus, int]:
        """How many of the job's tasks are in each status."""
        return {
            TaskStatus.QUEUED: self.n_queued,
            TaskStatus.ACTIVE: self.n_active,
            TaskStatus.COMPLETED: self.n_completed,
            TaskStatus.SOFT_FAILED: self.n_soft_failed,
            TaskStatus.FAILED: self.n_failed,
            TaskStatus.CANCELED: self.n_canceled,
            TaskStatus.PAUSED: self.n_paused,
        }

    @property
    def tasks_summary(self) -> dict[str, int]:
        """Arvados's tasks_summary: todo, running, done, failed."""
        return tasks_summary(self.__dict__)

    @property
    def etag(self) -> str:
        return etag(self.uuid, self.version)


@dataclass(frozen=True)
class TaskRow:
    id: int
    uuid: str
    job_id: int
    job_uuid: str
    owner_uuid: str
    created_at: dt.datetime
    modified_at: dt.datetime
    modified_by_client_uuid: str | None
    modified_by_user_uuid: str | None
    version: int
    sequence: int
    parameters: dict[str, Any]
    runtime_constraints: dict[str, Any]
    created_by_job_task_uuid: str | None
    status: TaskStatus
    output: str | None
    progress: float
    success: bool | None
    failed_count: int
    failed_at: dt.datetime | None
    failed_log: str | None
    log: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    attempt: int
    worker_id: str | None
    node_name: str | None
    lease_id: str | None
    lease_expires_at: dt.datetime | None
    token_digest: bytes | None
    runnable_after: dt.datetime | None
    failure_reason: dict[str, Any] | None

    @property
    def qsequence(self) -> int:
        """Order of arrival, 0-based."""
        return self.id - 1

    @property
    def etag(self) -> str:
        return etag(self.uuid, self.version)


@dataclass(frozen=True, slots=True)
class TokenRow:
    """An api_client_authorizations row without its secret's digest. A token without a
    row (the root token, a task's token) has an empty uuid and no times."""

    uuid: str
    owner_uuid: str
    scopes: list[str]
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    created_at: dt.datetime | None
    modified_at: dt.datetime | None
    modified_by_user_uuid: str | None


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def time_names(cls: type) -> tuple[str, ...]:
    """A row class's time columns (datetime, None or not): read back as UTC here, stamped
    into messages rather than copied (server/convert.py, server/task_messages.py)."""
    return tuple(f.name for f in dataclasses.fields(cls) if "datetime" in str(f.type))


def _optional(cls: type) -> frozenset[str]:
    """The columns that may be None (`X | None`)."""
    return frozenset(f.name for f in dataclasses.fields(cls) if "None" in str(f.type))


JOB_FIELDS = _fields(JobRow)
TASK_FIELDS = _fields(TaskRow)


def job_row(row: Row[Any] | Mapping[str, Any]) -> JobRow:
    """A job's row as read (a result row, or its columns by name; others are ignored)."""
    job: JobRow = _JOB.read(row)
    return job


def task_row(row: Row[Any] | Mapping[str, Any]) -> TaskRow:
    """A task's row as read (a result row, or its columns by name; others are ignored)."""
    task: TaskRow = _TASK.read(row)
    return task


def job_of_values(values: list[Any]) -> JobRow:
    """A job's row from its columns' values in table order (a row's first columns, as
    jobs_and_tasks reads them; `values` is used up)."""
    job: JobRow = _JOB.build(values)
    return job


def task_of_values(values: list[Any]) -> TaskRow:
    """A task's row from its columns' values in table order (`values` is used up)."""
    task: TaskRow = _TASK.build(values)
    return task


def jobs_and_tasks(rows: Iterable[Row[Any]]) -> list[tuple[JobRow, TaskRow]]:
    """Rows of a job's columns then one of its task's (each table's in table order), as a
    join of the two reads them (locks.lock_pairs): (job, task) each, one JobRow per job."""
    split = len(JOB_FIELDS)
    out: list[tuple[JobRow, TaskRow]] = []
    job: JobRow | None = None
    for row in rows:
        values = list(row)
        if job is None or job.id != values[0]:
            job = job_of_values(values[:split])
        out.append((job, task_of_values(values[split:])))
    return out


def token_row(row: Row[Any]) -> TokenRow:
    """A token's row without its digest, times in UTC."""
    m = row._mapping
    return TokenRow(
        uuid=m["uuid"],
        owner_uuid=m["owner_uuid"],
        scopes=list(m["scopes"] or []),
        expires_at=utc(m["expires_at"]),
        revoked_at=utc(m["revoked_at"]),
        created_at=utc(m["created_at"]),
        modified_at=utc(m["modified_at"]),
        modified_by_user_uuid=m["modified_by_user_uuid"],
    )


# Naive times read from SQLite, made UTC, by value: a read's rows mostly share their
# times (a claim's or a group's `now` is every row's modified_at, a submission's every
# job's created_at), and datetime.replace costs ~2.3 us on the 2-core machine (keyword
# arguments parsed in C), against ~0.2 for a lookup; ~11 a one-task job read back in its
# drain. Bounded: emptied when full. The times are immutable, so rows may share them.
_AWARE: dict[dt.datetime, dt.datetime] = {}
_AWARE_KEPT = 4096


def _aware(value: dt.datetime) -> dt.datetime:
    """value (naive) as UTC, kept in _AWARE."""
    if len(_AWARE) >= _AWARE_KEPT:
        _AWARE.clear()
    aware = _AWARE[value] = value.replace(tzinfo=dt.UTC)
    return aware


class _Layout:
    """Where each field of a row class sits, for the hot path's copies: a row is built from
    its values in table order into its instance dict at once, and copied by merging dicts
    (dataclasses.replace and asdict cost several times as much)."""

    def __init__(self, cls: type, public: tuple[str, ...], enum: type[StrEnum]) -> None:
        names = _fields(cls)
        self.cls = cls
        self.names = names
        self.width = len(names)
        self.enum = enum
        self.index = {name: i for i, name in enumerate(names)}
        self.columns = self.index.keys()
        self.status = self.index["status"]
        self.json = _payload_maker(public, _optional(cls))
        self.public = public
        self.time_names = time_names(cls)
        self.times = tuple(self.index[name] for name in self.time_names)
        self.make = _maker(cls, names)
        self.copy = _copier(cls)
        self.members: dict[Any, Any] = enum._value2member_map_
        # (result metadata, whether its rows start with this table's columns): read's.
        self._last_result: tuple[Any, bool] = (None, False)

    def read(self, row: Row[Any] | Mapping[str, Any]) -> Any:
        """A row as read: a whole-table row (the usual SELECT and RETURNING, its columns
        in table order, maybe followed by others: a claim's candidates) by position, any
        other by name; naive SQLite times made UTC."""
        if isinstance(row, Row):
            # Whether a result's rows start with the table's columns, decided once per
            # result (its metadata, row._parent): Row._fields builds a tuple each call.
            parent = row._parent
            seen, whole = self._last_result
            if parent is not seen:
                fields = row._fields
                whole = fields[: self.width] == self.names
                self._last_result = (parent, whole)
            if whole:
                return self.build(list(row)[: self.width] if len(row) > self.width else list(row))
        mapping = row._mapping if isinstance(row, Row) else row
        return self.build([mapping[name] for name in self.names])

    def build(self, values: list[Any]) -> Any:
        """A row from its columns' values, in table order (`values` is used up)."""
        known = _AWARE
        for i in self.times:
            value = values[i]
            if value is not None and value.tzinfo is None:
                values[i] = known.get(value) or _aware(value)
        values[self.status] = self._status(values[self.status])
        return self.make(values)

    def of_columns(self, values: dict[str, Any]) -> Any:
        """A row from a dict of every column by name, in table order, which becomes its
        instance dict (the caller gives it up): a row just inserted, built without
        listing its values and zipping them back (a third of the cost of `read`)."""
        known = _AWARE
        for name in self.time_names:
            value = values[name]
            if value is not None and value.tzinfo is None:
                values[name] = known.get(value) or _aware(value)
        values["status"] = self._status(values["status"])
        return self.copy(values)

    def _status(self, value: Any) -> Any:
        """The status as the enum: a dict lookup (calling the enum costs several times
        more); a value that is no status raises as calling it would."""
        member = self.members.get(value)
        return self.enum(value) if member is None else member

    def after(self, row: Any, written: Mapping[str, Any]) -> Any:
        if not written.keys() <= self.columns:
            unknown = next(name for name in written if name not in self.index)
            raise TypeError(f"{self.cls.__name__} has no column {unknown!r}")
        values = {**row.__dict__, **written}
        if "status" in written:
            values["status"] = self._status(values["status"])
        return self.copy(values)


def _maker(cls: type, names: tuple[str, ...]) -> Any:
    """A function of a row's values (a list, in table order) giving cls(*values) for a
    frozen dataclass, at about half the cost: its generated __init__ sets each field
    through object.__setattr__, this fills the new row's instance dict in one call (the row
    is the same: tests/core/test_rows.py)."""
    new = object.__new__

    def make(values: list[Any]) -> Any:
        row: Any = new(cls)
        row.__dict__.update(zip(names, values, strict=True))
        return row

    return make


def _copier(cls: type) -> Any:
    """A function of a dict of every field (in table order) giving the row with those
    values: the dict becomes the new row's instance dict (`_Layout.after` merges the old
    row's with the written columns)."""
    new = object.__new__
    set_dict = cls.__dict__["__dict__"].__set__

    def copy(values: dict[str, Any]) -> Any:
        row: Any = new(cls)
        set_dict(row, values)
        return row

    return copy


def _payload_maker(public: tuple[str, ...], optional: frozenset[str]) -> Any:
    """A function of a row giving its feed payload (to_json): the `public` columns in
    table order, the status as its value, each column whose value is what the decoder
    reads when it is absent (_MISSING's value, of the same type too: False is not 0, 0 is
    not 0.0, -0.0 is kept; else None, for an `optional` column) left out (_omit_test) --
    unrolled (as _maker): one dict display of the leading columns never left out, then a
    test per column, where a loop over the names cost several times as much."""
    lines: list[str] = []
    head: list[str] = []
    for n in public:
        # `_value_`: what `.value` gives, without its Python-level descriptor (statuses.py).
        value = f"row.{n}._value_" if n == "status" else f"row.{n}"
        test = _omit_test(n, optional)
        if test is None and not lines:
            head.append(f"{n!r}: {value}")
        elif test is None:
            lines.append(f"    out[{n!r}] = {value}\n")
        else:
            lines.append(f"    v = {value}\n    if {test}:\n        out[{n!r}] = v\n")
    source = "def payload(row):\n    out = {" + ", ".join(head) + "}\n"
    source += "".join(lines) + "    return out\n"
    scope: dict[str, Any] = {"_copysign": math.copysign}
    exec(source, scope)  # built from the dataclass's own field names
    return scope["payload"]


def _omit_test(name: str, optional: frozenset[str]) -> str | None:
    """The test (of `v`) under which the column goes into a payload; None: always."""
    if name == "status":
        return None
    if name in _MISSING:
        default = _MISSING[name]
        if default is False:
            return "v is not False"
        kind = type(default).__name__
        test = f"v.__class__ is not {kind} or v != {default!r}"
        # 0.0 == -0.0: a negative zero is kept.
        return test + " or _copysign(1.0, v) < 0.0" if kind == "float" else test
    return "v is not None" if name in optional else None


# What the decoders read for a column a feed payload lacks: the private columns; columns
# added after it was written; and, left out by to_json, these defaults (and None).
_MISSING: dict[str, Any] = {
    "identity": "",
    "script_parameters": {},
    "parameters": {},
    "runtime_constraints": {},
    "running": False,
    "version": 1,
    "priority": 0,
    "script_version": "",
    "progress": 0.0,
    "failed_count": 0,
    "attempt": 0,
    "sequence": 0,
    **dict.fromkeys(TASK_STATUS_COUNTS, 0),
}

# Columns that never leave the store (secrets and internal bookkeeping).
_PRIVATE = frozenset({"token_digest", "submit_digest", "identity"})
_JOB = _Layout(JobRow, tuple(n for n in JOB_FIELDS if n not in _PRIVATE), JobStatus)
_TASK = _Layout(TaskRow, tuple(n for n in TASK_FIELDS if n not in _PRIVATE), TaskStatus)


def job_of_columns(values: dict[str, Any]) -> JobRow:
    """A job's row from a dict of every column by name, in table order, that the row takes
    as its own (jobtask.store.inserts: a row as inserted)."""
    job: JobRow = _JOB.of_columns(values)
    return job


def task_of_columns(values: dict[str, Any]) -> TaskRow:
    """A task's row from a dict of every column by name, in table order (job_of_columns)."""
    task: TaskRow = _TASK.of_columns(values)
    return task


def job_after(job: JobRow, written: Mapping[str, Any]) -> JobRow:
    """The job's row once `written` (columns, version and modified_* included) is written
    to it: what reading it back would give, without reading it."""
    after: JobRow = _JOB.after(job, written)
    return after


def task_after(task: TaskRow, written: Mapping[str, Any]) -> TaskRow:
    """The task's row once `written` (columns, version and modified_* included) is written
    to it: what reading it back would give, without reading it."""
    after: TaskRow = _TASK.after(task, written)
    return after


def to_json(row: JobRow | TaskRow) -> dict[str, Any]:
    """A row as JSON for the change feed, as stored: secrets dropped, and every column
    whose value is the one the decoder reads for an absent column (None, or _MISSING's)
    left out, as are the derived attributes (tasks_summary, qsequence, etag: the decoders
    recompute them) -- a third of the full form's size. job_from_json / task_from_json
    (rows) and job_payload / task_payload (the full form, for readers of the JSON) take
    it, and the full form older payloads have. Its datetimes stay datetimes: the store's
    JSON codec (json_codec.dumps, orjson) writes each as the ISO text isoformat() gives,
    in C (made ISO text here, they were a third of a payload's cost)."""
    out: dict[str, Any] = (_JOB if isinstance(row, JobRow) else _TASK).json(row)
    return out


_ABSENT = object()


def _from_json(
    payload: Mapping[str, Any], names: tuple[str, ...], *, times: bool = True
) -> dict[str, Any]:
    """The columns `names` of a payload (either form): an absent one as _MISSING has
    it (a fresh {} for a dict), else None; ISO times as datetimes (`times`), else as the
    JSON holds them."""
    values: dict[str, Any] = {}
    for name in names:
        value = payload.get(name, _ABSENT)
        if value is _ABSENT:
            value = _MISSING.get(name)
            if value.__class__ is dict:
                value = {}
        elif (
            times and isinstance(value, str) and (name.endswith("_at") or name == "runnable_after")
        ):
            value = dt.datetime.fromisoformat(value)
        values[name] = value
    return values


def job_from_json(payload: Mapping[str, Any]) -> JobRow:
    """The inverse of to_json for a job (its private columns left empty)."""
    values = _from_json(payload, JOB_FIELDS)
    values["status"] = JobStatus(values["status"])
    return JobRow(**values)


def task_from_json(payload: Mapping[str, Any]) -> TaskRow:
    """The inverse of to_json for a task (its private columns left empty)."""
    values = _from_json(payload, TASK_FIELDS)
    values["status"] = TaskStatus(values["status"])
    return TaskRow(**values)


def job_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A job's feed payload (either form) in full, as JSON gives it back (times as ISO
    text): every public column, then tasks_summary and etag -- what to_json wrote
    before it left out defaults, for readers of the JSON itself (tests/chaos)."""
    out = _from_json(payload, _JOB.public, times=False)
    out["tasks_summary"] = tasks_summary(out)
    out["etag"] = etag(out["uuid"], out["version"])
    return out


def task_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A task's feed payload (either form) in full, as job_payload: every public
    column, then qsequence and etag."""
    out = _from_json(payload, _TASK.public, times=False)
    out["qsequence"] = out["id"] - 1
    out["etag"] = etag(out["uuid"], out["version"])
    return out
