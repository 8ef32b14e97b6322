"""List requests (ListJobs, QueueJobs, ListTasks) → a checked ListQuery."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from jobtask.domain.errors import InvalidArgument
from jobtask.domain.query import ListQuery, parse_list_query
from jobtask.domain.resources import Attr
from jobtask.server.convert import list_value


def list_query(
    request: Any,
    attrs: Mapping[str, Attr],
    default_order: Sequence[tuple[str, bool]] = (("modified_at", True), ("uuid", False)),
) -> ListQuery:
    return parse_list_query(
        attrs,
        filters=_json(list_value, request, "filters"),
        where=_json(json_format.MessageToDict, request, "where"),
        order=list(request.order),
        select=list(request.select),
        limit=request.limit if request.HasField("limit") else None,
        offset=request.offset if request.HasField("offset") else None,
        count=request.count,
        default_order=default_order,
    )


def _json(convert: Callable[[Any], Any], request: Any, name: str) -> Any:
    """A ListValue or Struct parameter as JSON values; None when unset. JSON has no NaN or
    infinity, and protobuf refuses to write them out: the parameter is named instead."""
    if not request.HasField(name):
        return None
    try:
        return convert(getattr(request, name))
    except ValueError:
        raise InvalidArgument(name, "numbers must be finite (no NaN or Infinity)") from None
