"""The users table: a user exists once a token names it, and may be an admin."""

from __future__ import annotations

import datetime as dt

from jobtask.store.schema import users
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["ensure_user"]

_IS_ADMIN = select(users.c.is_admin).where(users.c.uuid == bindparam("user"))
_INSERT_USER = insert(users)
_MAKE_ADMIN = (
    update(users)
    .where(users.c.uuid == bindparam("user"))
    .values(is_admin=True, modified_at=bindparam("now"))
)


async def ensure_user(
    conn: AsyncConnection, uuid: str, *, is_admin: bool, now: dt.datetime
) -> None:
    """Creates the user if missing; an existing user keeps its admin flag unless raised."""
    row = (await conn.execute(_IS_ADMIN, {"user": uuid})).first()
    if row is None:
        await conn.execute(
            _INSERT_USER,
            {"uuid": uuid, "is_admin": is_admin, "created_at": now, "modified_at": now},
        )
    elif is_admin and not row.is_admin:
        await conn.execute(_MAKE_ADMIN, {"user": uuid, "now": now})
