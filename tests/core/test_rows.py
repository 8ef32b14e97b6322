"""The typed rows (jobtask.store.rows): one field per column, frozen, statuses as enums, and
a feed payload that turns back into the row it was made from."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jobtask.domain.statuses import JobStatus, TaskStatus
from jobtask.store import json_codec, rows
from jobtask.store.rows import (
    JobRow,
    TaskRow,
    TokenRow,
    job_after,
    job_from_json,
    job_of_columns,
    job_payload,
    job_row,
    task_after,
    task_from_json,
    task_of_columns,
    task_payload,
    task_row,
    to_json,
)
from jobtask.store.schema import api_client_authorizations, job_tasks, jobs

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_rows_have_one_field_per_column_in_table_order() -> None:
    assert _names(JobRow) == [c.name for c in jobs.c]
    assert _names(TaskRow) == [c.name for c in job_tasks.c]
    # A token's row leaves out its id and its secret's digest.
    kept = [c.name for c in api_client_authorizations.c if c.name not in ("id", "secret_digest")]
    assert sorted(_names(TokenRow)) == sorted(kept)


def _job_columns() -> dict[str, object]:
    columns: dict[str, object] = dict.fromkeys((c.name for c in jobs.c), None)
    columns.update(
        id=7,
        uuid="zzzzz-8i9sb-000000000000007",
        owner_uuid="zzzzz-tpzed-000000000000001",
        created_at=NOW.replace(tzinfo=None),  # as SQLite hands it back
        modified_at=NOW,
        version=3,
        identity="abc",
        submit_digest="d" * 64,
        priority=1,
        script="hash",
        script_parameters={"a": 1},
        script_version="",
        runtime_constraints={},
        status="active",
        state="Running",
        running=True,
        n_queued=2,
        n_active=1,
        n_completed=4,
        n_soft_failed=1,
        n_failed=0,
        n_canceled=0,
        n_paused=1,
        blocklist=[{"worker_id": "w", "failed_tasks": 3, "added_at": NOW.isoformat()}],
    )
    return columns


def _task_columns() -> dict[str, object]:
    columns: dict[str, object] = dict.fromkeys((c.name for c in job_tasks.c), None)
    columns.update(
        id=12,
        uuid="zzzzz-ot0gb-000000000000012",
        job_id=7,
        job_uuid="zzzzz-8i9sb-000000000000007",
        owner_uuid="zzzzz-tpzed-000000000000001",
        created_at=NOW,
        modified_at=NOW,
        version=2,
        sequence=1,
        parameters={"input": "x"},
        runtime_constraints={"min_ram_mb_per_node": 1},
        status="active",
        progress=0.5,
        failed_count=1,
        attempt=2,
        worker_id="w",
        node_name="n",
        lease_id="l" * 32,
        lease_expires_at=NOW + dt.timedelta(seconds=30),
        token_digest=b"\x01" * 32,
    )
    return columns


def test_a_row_is_read_with_enums_and_utc_times_and_its_derived_attributes() -> None:
    job = job_row(_job_columns())
    assert job.status is JobStatus.ACTIVE
    assert job.created_at == NOW and job.created_at.tzinfo is dt.UTC
    assert job.tasks_summary == {"todo": 4, "running": 1, "done": 4, "failed": 0}
    assert job.counts[TaskStatus.PAUSED] == 1
    task = task_row(_task_columns())
    assert task.status is TaskStatus.ACTIVE
    assert task.qsequence == 11
    assert task.etag != job.etag


def test_a_row_of_its_columns_in_table_order_is_the_row_read() -> None:
    # A row just inserted (jobtask.store.inserts) takes its columns' dict as its own.
    for of_columns, read, columns in (
        (job_of_columns, job_row, _job_columns),
        (task_of_columns, task_row, _task_columns),
    ):
        made, expected = of_columns(columns()), read(columns())
        assert made == expected
        assert list(vars(made).items()) == list(vars(expected).items())
        assert made.status is expected.status and made.created_at.tzinfo is dt.UTC


def test_rows_are_frozen_and_change_by_replacement() -> None:
    task = task_row(_task_columns())
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.progress = 1.0  # type: ignore[misc]
    done = task_after(task, {"status": "completed", "progress": 1.0, "version": 3})
    assert done.status is TaskStatus.COMPLETED and done.progress == 1.0
    assert task.status is TaskStatus.ACTIVE and task.progress == 0.5  # the old row stays
    assert done.etag != task.etag
    moved = job_after(job_row(_job_columns()), {"status": JobStatus.COMPLETED})
    assert moved.status is JobStatus.COMPLETED
    with pytest.raises(TypeError):
        task_after(task, {"no_such_column": 1})


def test_a_feed_payload_keeps_secrets_out_and_turns_back_into_the_row() -> None:
    job = job_row(_job_columns())
    payload = to_json(job)
    assert "identity" not in payload and "submit_digest" not in payload
    assert payload["status"] == "active"
    full = job_payload(payload)
    assert full["tasks_summary"]["todo"] == 4 and full["etag"] == job.etag
    assert job_from_json(payload) == dataclasses.replace(job, identity="", submit_digest=None)
    task = task_row(_task_columns())
    payload = to_json(task)
    assert "token_digest" not in payload and task_payload(payload)["qsequence"] == 11
    assert task_from_json(payload) == dataclasses.replace(task, token_digest=None)


def test_a_feed_payload_leaves_out_defaults_and_derived_attributes() -> None:
    """A stored payload holds the public columns in table order, less each one at the
    value its decoder reads when it is absent (None; {}, 0, 0.0, 1, False, "" where the
    decoder knows that default, of the same type) and less the derived attributes; its
    full form (job_payload, task_payload) has them all, the derived ones last."""
    private = {"identity", "submit_digest", "token_digest"}
    job = job_row({**_job_columns(), "running": False, "priority": 0, "n_queued": 0, "version": 1})
    task = task_row({**_task_columns(), "progress": 0.0, "parameters": {}, "sequence": 0})
    for row, table, expand, derived in (
        (job, jobs, job_payload, ["tasks_summary", "etag"]),
        (task, job_tasks, task_payload, ["qsequence", "etag"]),
    ):
        payload = to_json(row)
        public = [c.name for c in table.c if c.name not in private]
        kept = [
            name
            for name in public
            if getattr(row, name) is not None
            and (name not in _DEFAULTS or _exact(getattr(row, name)) != _exact(_DEFAULTS[name]))
        ]
        assert list(payload) == kept
        assert type(payload["status"]) is str and payload["status"] == row.status.value
        assert list(expand(payload)) == public + derived
    assert not {"running", "priority", "n_queued", "version", "failure_reason"} & set(to_json(job))
    assert not {"progress", "parameters", "sequence", "failed_at"} & set(to_json(task))
    # An active task (its lease and worker named) in two thirds of the room.
    assert len(json_codec.dumps(to_json(task))) < len(json_codec.dumps(_full_form(task))) * 2 / 3
    # A value equal to the default but of another type stays: False is not 0.
    odd = job_row({**_job_columns(), "priority": False, "running": 0})
    assert to_json(odd)["priority"] is False and to_json(odd)["running"] == 0


def test_a_feed_payload_is_written_with_its_times_as_iso_text() -> None:
    """The store's JSON codec writes a payload's datetimes as isoformat() does: with their
    offset, microseconds only when there are some (naive SQLite times made UTC first)."""
    started = dt.datetime(2026, 12, 4, 12, 0, 1, 5)  # naive, as SQLite hands it back
    task = task_row({**_task_columns(), "started_at": started})
    stored = json.loads(json_codec.dumps(to_json(task)))
    assert stored["created_at"] == "2026-12-04T12:00:00+00:00"
    assert stored["started_at"] == "2026-12-04T12:00:01.000005+00:00"
    assert "finished_at" not in stored and stored["status"] == task.status.value
    assert task_from_json(stored) == dataclasses.replace(task, token_digest=None)


def test_a_payload_written_before_a_column_existed_still_reads() -> None:
    payload = _stored(_full_form(task_row(_task_columns())))
    for later in ("failure_reason", "runnable_after", "failed_count"):
        del payload[later]
    task = task_from_json(payload)
    assert task.failure_reason is None and task.runnable_after is None and task.failed_count == 0


def test_a_whole_row_read_by_position_equals_the_row_read_by_name(tmp_path: object) -> None:
    """job_row and task_row build a whole-table row by position (the hot path: also one
    with more columns after the table's, as a claim's candidates) and any other by name:
    all give the same row, naive SQLite times made UTC."""
    from jobtask.store.schema import metadata
    from sqlalchemy import create_engine, insert, literal, select

    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    job_columns = {k: v for k, v in _job_columns().items() if v is not None}
    task_columns = {k: v for k, v in _task_columns().items() if v is not None}
    with engine.begin() as conn:
        conn.execute(insert(jobs), job_columns)
        conn.execute(insert(job_tasks), task_columns)
        job_read = conn.execute(select(jobs)).one()
        task_read = conn.execute(select(job_tasks)).one()
        some = conn.execute(select(*reversed(list(job_tasks.c)))).one()
        wider = conn.execute(select(job_tasks, literal(3).label("job_priority"))).one()
    assert job_row(job_read) == job_row(dict(job_read._mapping)) == job_row(_job_columns())
    assert task_row(task_read) == task_row(some) == task_row(_task_columns())
    assert task_row(wider) == task_row(task_read)
    assert task_row(task_read).lease_expires_at.tzinfo is dt.UTC  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "value",
    [
        NOW,
        NOW.replace(microsecond=123456),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 4, 14, 30, 1, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(2026, 12, 4, 12, 0, 0, 7),  # naive: UTC
    ],
)
def test_a_rows_times_are_sent_as_timestamp_from_datetime_would(value: dt.datetime) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp
    from jobtask.server.convert import timestamp

    expected = Timestamp()
    expected.FromDatetime(value)
    assert timestamp(value) == expected


# -- the feed payload's two forms ----------------------------------------------------------

_PRIVATE = {"identity", "submit_digest", "token_digest"}


def _full_form(row: JobRow | TaskRow) -> dict[str, Any]:
    """The payload as to_json wrote it before it left out defaults: every public column,
    the status as its value, then the derived attributes."""
    out: dict[str, Any] = {
        f.name: getattr(row, f.name) for f in dataclasses.fields(row) if f.name not in _PRIVATE
    }
    out["status"] = row.status.value
    if isinstance(row, JobRow):
        out.update(tasks_summary=row.tasks_summary, etag=row.etag)
    else:
        out.update(qsequence=row.qsequence, etag=row.etag)
    return out


def _stored(payload: dict[str, Any]) -> Any:
    return json_codec.loads(json_codec.dumps(payload))


def _exact(value: Any) -> str:
    """Equal only if equal in type too (False == 0 == 0.0 and 0.0 == -0.0 in Python)."""
    return repr(value)


_TIMES = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
).map(lambda t: t.replace(fold=0))  # JSON keeps no fold: nor did it before
_JSON = st.dictionaries(
    st.text(max_size=4),
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=4),
    max_size=3,
)
_NUMBER = (
    st.sampled_from([0, 1, 0.0, -0.0, False, True])
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
)
# Each column's values by its type, the decoder's defaults and their look-alikes included.
_VALUES: dict[str, Any] = {
    "int": st.sampled_from([0, 1]) | st.integers(-(2**40), 2**40),
    "str": st.sampled_from(["", "0"]) | st.text(max_size=8),
    "bool": st.booleans(),
    "float": _NUMBER,
    "dict[str, Any]": st.just({}) | _JSON,
    "dt.datetime": _TIMES,
    "list[dict[str, Any]]": st.lists(_JSON, max_size=2),
}


def _column(f: dataclasses.Field[Any], statuses: Any) -> Any:
    kind = str(f.type)
    if f.name == "status":
        return st.sampled_from(list(statuses))
    if f.name in _PRIVATE:
        return st.just("" if f.name == "identity" else None)
    if f.name == "id":
        return st.integers(1, 2**40)
    if kind.endswith(" | None"):
        return st.none() | _VALUES[kind.removesuffix(" | None")]
    return _VALUES[kind]


def _rows(cls: type, statuses: Any) -> Any:
    return st.builds(cls, **{f.name: _column(f, statuses) for f in dataclasses.fields(cls)})


def _check_both_forms(row: JobRow | TaskRow) -> None:
    decode, expand = (
        (job_from_json, job_payload) if isinstance(row, JobRow) else (task_from_json, task_payload)
    )
    new, old = _stored(to_json(row)), _stored(_full_form(row))
    assert len(json_codec.dumps(new)) <= len(json_codec.dumps(old))
    # The row back, exactly (types too), from the stored payload and from an old full one.
    assert _exact(decode(new)) == _exact(decode(old)) == _exact(row)
    # The full form back, as JSON holds it, from either.
    assert _exact(expand(new)) == _exact(expand(old)) == _exact(old)


@settings(max_examples=300, deadline=None)
@given(job=_rows(JobRow, JobStatus), task=_rows(TaskRow, TaskStatus))
def test_a_payload_turns_back_into_the_same_row_and_the_same_full_payload(
    job: JobRow, task: TaskRow
) -> None:
    _check_both_forms(job)
    _check_both_forms(task)


def test_rows_at_every_default_and_with_every_column_set_round_trip() -> None:
    for columns, cls in ((_job_columns(), JobRow), (_task_columns(), TaskRow)):
        for f in dataclasses.fields(cls):
            if columns[f.name] is None and f.name not in _PRIVATE:
                columns[f.name] = {"dt.datetime | None": NOW, "bool | None": False}.get(
                    str(f.type), "x" if "str" in str(f.type) else {"k": None}
                )
        full: JobRow | TaskRow
        bare: JobRow | TaskRow
        if cls is JobRow:
            columns["blocklist"] = [{"a": 1}]
            full = job_row(columns)
            bare = job_row({n: _default_or(n, columns) for n in columns})
        else:
            full = task_row(columns)
            bare = task_row({n: _default_or(n, columns) for n in columns})
        _check_both_forms(dataclasses.replace(full, **_BLANK[cls]))
        _check_both_forms(dataclasses.replace(bare, **_BLANK[cls]))
        assert set(to_json(bare)) == _REQUIRED[cls]


_BLANK: dict[type, dict[str, Any]] = {
    JobRow: {"identity": "", "submit_digest": None},
    TaskRow: {"token_digest": None},
}
# The columns a payload always holds (no default the decoder knows).
_REQUIRED = {
    JobRow: {"id", "uuid", "owner_uuid", "created_at", "modified_at", "script", "status", "state"},
    TaskRow: {"id", "uuid", "job_id", "job_uuid", "owner_uuid", "created_at", "modified_at"}
    | {"status"},
}
# What the decoders read for an absent column, when not None.
_DEFAULTS = rows._MISSING


def _default_or(name: str, columns: dict[str, Any]) -> Any:
    """The column's value if a payload always holds it, else its default."""
    return columns[name] if name in _REQUIRED[JobRow] | _REQUIRED[TaskRow] else _DEFAULTS.get(name)


@pytest.mark.parametrize("version", [1, 2, 10**12])
def test_an_etag_is_the_base36_md5_of_uuid_and_version(version: int) -> None:
    """An etag is the base-36 MD5 of the uuid and the version (Arvados' form)."""
    import hashlib

    from jobtask.domain.uuids import base36
    from jobtask.store.rows import etag

    uuid = "zzzzz-ot0gb-000000000000012"
    digest = hashlib.md5(f"{uuid}:{version}".encode()).digest()
    assert etag.__wrapped__(uuid, version) == base36(int.from_bytes(digest, "big"))


def test_naive_times_read_are_made_utc_by_value_and_the_kept_ones_are_bounded() -> None:
    naive = NOW.replace(tzinfo=None)
    columns = {**_task_columns(), "created_at": naive, "modified_at": naive, "failed_at": None}
    first, second = task_row(dict(columns)), task_row(dict(columns))
    for row in (first, second):
        assert row.created_at == NOW and row.created_at.tzinfo is dt.UTC
        assert row.modified_at.tzinfo is dt.UTC and row.failed_at is None
    assert second.modified_at is first.created_at  # one object per value, shared
    # An aware time is kept as it came; a new value past the bound empties what is kept.
    aware = task_row({**_task_columns(), "started_at": NOW + dt.timedelta(hours=1)})
    assert aware.started_at == NOW + dt.timedelta(hours=1)
    for k in range(rows._AWARE_KEPT + 10):
        value = naive + dt.timedelta(microseconds=k + 1)
        assert task_row({**columns, "modified_at": value}).modified_at == value.replace(
            tzinfo=dt.UTC
        )
        assert len(rows._AWARE) <= rows._AWARE_KEPT
