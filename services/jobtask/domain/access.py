"""Who may read what: an object's owner, or an admin. The one read rule of jobs, tasks,
tokens and attempt histories (jobtask.store.access.readable_by is its SQL form)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Reader", "may_read", "only_owner"]


class Reader(Protocol):
    """Who is asking (jobtask.manager.context.Caller)."""

    @property
    def user_uuid(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...


def only_owner(reader: Reader) -> str | None:
    """The one owner whose objects the reader may read; None: every owner's (admins)."""
    return None if reader.is_admin else reader.user_uuid


def may_read(reader: Reader, owner_uuid: str) -> bool:
    owner = only_owner(reader)
    return owner is None or owner == owner_uuid
