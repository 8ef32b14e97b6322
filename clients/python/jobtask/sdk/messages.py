"""Plain Python values → the request messages' protobuf pieces (Struct, ListValue, ...)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Required, TypeAlias, TypedDict

from google.protobuf import json_format, struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from jobtask.sdk.errors import InvalidArgumentError
from jobtask.v1 import job_pb2, job_service_pb2, task_service_pb2

# Arvados filters: [[attribute, operator, operand], ...].
Filters: TypeAlias = Sequence[Sequence[Any]]
Constraints: TypeAlias = job_pb2.RuntimeConstraints | Mapping[str, int]
ListRequest: TypeAlias = job_service_pb2.ListJobsRequest | task_service_pb2.ListTasksRequest

CONSTRAINT_KEYS = tuple(job_pb2.RuntimeConstraints.DESCRIPTOR.fields_by_name)


def struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    if value:
        result.update(dict(value))
    return result


def list_value(items: Filters) -> struct_pb2.ListValue:
    result = struct_pb2.ListValue()
    for item in items:
        result.append(list(item))  # type: ignore[arg-type]  # ListValue converts lists
    return result


def constraints(value: Constraints | None) -> job_pb2.RuntimeConstraints:
    if isinstance(value, job_pb2.RuntimeConstraints):
        return value
    result = job_pb2.RuntimeConstraints()
    for key, number in (value or {}).items():
        if key not in CONSTRAINT_KEYS:
            known = ", ".join(CONSTRAINT_KEYS)
            raise InvalidArgumentError(
                f"unknown runtime constraint {key!r} (known: {known})", field="constraints"
            )
        setattr(result, key, int(number))
    return result


class Submission(TypedDict, total=False):
    """One job for AsyncClient.create_jobs: submit's arguments as a dict."""

    script: Required[str]
    parameters: Mapping[str, Any] | None
    version: str
    priority: int
    constraints: Constraints | None
    submit_id: str | None
    allow_duplicate: bool
    repository: str | None


def create_job_request(submission: Submission) -> job_service_pb2.CreateJobRequest:
    """The CreateJob request of a submission (AsyncClient.submit, create_jobs)."""
    job = job_pb2.Job(
        script=submission["script"],
        script_version=submission.get("version", ""),
        priority=submission.get("priority", 0),
    )
    job.script_parameters.CopyFrom(struct(submission.get("parameters")))
    if submission.get("constraints"):
        job.runtime_constraints.CopyFrom(constraints(submission.get("constraints")))
    submit_id = submission.get("submit_id")
    if submit_id:
        job.submit_id = submit_id
    repository = submission.get("repository")
    if repository:
        job.repository = repository
    return job_service_pb2.CreateJobRequest(
        job=job, allow_duplicate=submission.get("allow_duplicate", False)
    )


def duration(seconds: float) -> Duration:
    result = Duration()
    result.FromTimedelta(dt.timedelta(seconds=seconds))
    return result


class ListOptions(TypedDict, total=False):
    """Arvados's index parameters besides filters (the SDK's list methods take them as
    keywords): `where` (attribute -> value), `order` ("attr asc" or a list of them),
    `select` (attributes to return), `limit`, `offset`, `count` ("exact" or "none")."""

    where: Mapping[str, Any] | None
    order: Sequence[str] | str | None
    select: Sequence[str] | None
    limit: int | None
    offset: int | None
    count: str | None


def fill_list_request(request: ListRequest, filters: Filters | None, options: ListOptions) -> None:
    """Arvados's index parameters, shared by ListJobs, QueueJobs and ListTasks."""
    unknown = options.keys() - ListOptions.__annotations__.keys()
    if unknown:
        # **options is typed for mypy; callers without it still get the usual TypeError.
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")
    if filters:
        request.filters.CopyFrom(list_value(filters))
    if where := options.get("where"):
        request.where.CopyFrom(struct(where))
    if order := options.get("order"):
        request.order.extend([order] if isinstance(order, str) else order)
    if select := options.get("select"):
        request.select.extend(select)
    if (limit := options.get("limit")) is not None:
        request.limit = limit
    if (offset := options.get("offset")) is not None:
        request.offset = offset
    if count := options.get("count"):
        request.count = count


def to_dict(message: Message) -> dict[str, Any]:
    """JSON-ready dict with the proto field names (what `--json` prints); whole numbers
    in Struct values (parameters) as integers, as they were sent."""
    result = json_format.MessageToDict(message, preserving_proto_field_name=True)
    if message.DESCRIPTOR.full_name in _JSON_VALUED:
        return dict(whole_numbers(result))
    _whole_numbers_in_structs(message, result)
    return result


_JSON_VALUED = {"google.protobuf.Struct", "google.protobuf.ListValue", "google.protobuf.Value"}


def _whole_numbers_in_structs(message: Message, data: dict[str, Any]) -> None:
    for field, value in message.ListFields():
        if field.message_type is None or field.name not in data:
            continue
        if field.message_type.full_name in _JSON_VALUED:
            data[field.name] = whole_numbers(data[field.name])
        elif field.message_type.GetOptions().map_entry:
            continue
        elif field.is_repeated:
            for item, item_data in zip(value, data[field.name], strict=True):
                if isinstance(item_data, dict):
                    _whole_numbers_in_structs(item, item_data)
        elif isinstance(data[field.name], dict):
            _whole_numbers_in_structs(value, data[field.name])


def whole_numbers(value: Any) -> Any:
    """Struct numbers are doubles: `4` comes back as `4.0`. Whole ones go out as integers
    (the services refuse integers past 2^53, which a double cannot hold exactly)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    return value
