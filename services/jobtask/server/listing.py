"""List requests (ListJobs, QueueJobs, ListTasks) → a checked ListQuery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format
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
        filters=list_value(request.filters) if request.HasField("filters") else None,
        where=json_format.MessageToDict(request.where) if request.HasField("where") else None,
        order=list(request.order),
        select=list(request.select),
        limit=request.limit if request.HasField("limit") else None,
        offset=request.offset if request.HasField("offset") else None,
        count=request.count,
        default_order=default_order,
    )
