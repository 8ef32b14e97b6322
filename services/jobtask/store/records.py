"""Rows as plain dicts ("records"), with the attributes derived from stored columns."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Mapping
from typing import Any

from jobtask.domain.statuses import TaskStatus
from jobtask.store.schema import TASK_STATUS_COUNTS
from sqlalchemy.engine import Row

Record = dict[str, Any]

# Column of the job row that counts tasks in each status.
COUNT_COLUMN: dict[TaskStatus, str] = {
    TaskStatus(name[2:].replace("_", "-")): name for name in TASK_STATUS_COUNTS
}

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


@functools.lru_cache(maxsize=8192)
def etag(uuid: str, version: int) -> str:
    """Changes whenever the object changes (Arvados: a base-36 MD5). Cached: a job's row
    is turned into a record several times per task write at the same version."""
    n = int.from_bytes(hashlib.md5(f"{uuid}:{version}".encode()).digest(), "big")
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _B36[r] + out
    return out or "0"


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _fix_times(record: Record) -> Record:
    for key, value in record.items():
        if isinstance(value, dt.datetime):
            record[key] = utc(value)
    return record


def task_counts(record: Record) -> dict[TaskStatus, int]:
    return {status: int(record[column]) for status, column in COUNT_COLUMN.items()}


def job_record(row: Row[Any]) -> Record:
    return job_record_of(dict(row._mapping))


def job_record_of(columns: dict[str, Any]) -> Record:
    """A job's record from its columns (job_record, given a dict)."""
    record = _fix_times(columns)
    counts = task_counts(record)
    record["tasks_summary"] = {
        "todo": counts[TaskStatus.QUEUED]
        + counts[TaskStatus.SOFT_FAILED]
        + counts[TaskStatus.PAUSED],
        "running": counts[TaskStatus.ACTIVE],
        "done": counts[TaskStatus.COMPLETED],
        "failed": counts[TaskStatus.FAILED],
    }
    record["etag"] = etag(record["uuid"], record["version"])
    return record


def task_record(row: Row[Any]) -> Record:
    record = _fix_times(dict(row._mapping))
    record["qsequence"] = record["id"] - 1
    record["etag"] = etag(record["uuid"], record["version"])
    return record


# Columns that never leave the store (secrets and internal bookkeeping).
_PRIVATE = {"token_digest", "submit_digest", "identity"}


def job_after(job: Record, written: Mapping[str, Any]) -> Record:
    """The job's record once `written` (columns, version and modified_* included) is
    written to its row: what job_record would read back, without reading it."""
    new = {**job, **written}
    for derived in ("tasks_summary", "etag"):
        new.pop(derived, None)
    return job_record_of(new)


def task_after(task: Record, written: Mapping[str, Any]) -> Record:
    """The task's record once `written` (columns, version and modified_* included) is
    written to its row: what task_record would read back, without reading it."""
    new = _fix_times({**task, **written})
    new["etag"] = etag(new["uuid"], new["version"])
    return new


def to_json(record: Record) -> dict[str, Any]:
    """A record as JSON for the change feed: datetimes as ISO strings, secrets dropped."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in _PRIVATE or isinstance(value, bytes):
            continue
        out[key] = value.isoformat() if isinstance(value, dt.datetime) else value
    return out


_TIME_KEYS = {
    "created_at",
    "modified_at",
    "cancelled_at",
    "started_at",
    "finished_at",
    "failed_at",
    "lease_expires_at",
    "runnable_after",
}


def from_json(payload: dict[str, Any]) -> Record:
    """The inverse of to_json."""
    record = dict(payload)
    for key in _TIME_KEYS & record.keys():
        if record[key] is not None:
            record[key] = dt.datetime.fromisoformat(record[key])
    return record
