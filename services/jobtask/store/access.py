"""The read rule of jobtask.domain.access as a filter of list and lookup statements."""

from __future__ import annotations

from jobtask.domain.access import Reader, only_owner
from sqlalchemy import ColumnElement, true

__all__ = ["readable_by"]


def readable_by(reader: Reader, owner_uuid: ColumnElement[str]) -> ColumnElement[bool]:
    """Rows whose `owner_uuid` column the reader may read: admins all, others their own."""
    owner = only_owner(reader)
    return true() if owner is None else owner_uuid == owner
