"""List requests (ListJobs, QueueJobs, ListTasks) → a checked ListQuery; a list's items
trimmed to its `select`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message
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


# Kept whatever `select` names, as Arvados does (`@select |= ["kind"]`): what the item is.
ALWAYS_SELECTED = frozenset({"kind"})


def keep_selected(items: RepeatedCompositeFieldContainer[Any], select: Sequence[str]) -> None:
    """Arvados's `select` on a list's items: each keeps the fields named (attributes are
    field names; list_query checked them) and `kind`; the others are cleared. No select
    (the usual list) costs nothing: nothing is looked at."""
    if not select or not items:
        return
    keep = ALWAYS_SELECTED.union(select)
    first: Message = items[0]
    cleared = [field.name for field in first.DESCRIPTOR.fields if field.name not in keep]
    for item in items:
        for name in cleared:
            item.ClearField(name)
