"""Tokens as stored: api_client_authorizations records (a SHA-256 of the secret, never the
secret) and the tokens of claimed tasks (job_tasks.token_digest)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from jobtask.domain.access import Reader
from jobtask.domain.query import ListQuery
from jobtask.domain.statuses import TaskStatus
from jobtask.store.access import readable_by
from jobtask.store.listing import run_list
from jobtask.store.rows import TokenRow, token_row, utc
from jobtask.store.schema import api_client_authorizations, job_tasks, users
from sqlalchemy import ColumnElement, Row, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "StoredToken",
    "TaskToken",
    "all_tokens",
    "canceled_task_by_token",
    "delete_token",
    "insert_token",
    "list_tokens",
    "readable_token",
    "revoke_token",
    "task_by_token",
    "token_by_digest",
    "token_by_uuid",
    "tokens_by_uuids",
]

tokens_t = api_client_authorizations


@dataclass(frozen=True)
class StoredToken:
    """A token's record, the digest of its secret and whether its owner is an admin."""

    record: TokenRow
    secret_digest: bytes
    owner_is_admin: bool


@dataclass(frozen=True)
class TaskToken:
    """An active task whose token has this digest."""

    task_uuid: str
    job_uuid: str
    owner_uuid: str
    lease_expires_at: dt.datetime | None
    token_digest: bytes


# Every authenticated call runs one of these: built once (building and keying a statement
# costs SQLAlchemy more than SQLite takes to answer it).
_TOKENS = select(tokens_t, users.c.is_admin).join(users, users.c.uuid == tokens_t.c.owner_uuid)
_TOKEN_BY_UUID = _TOKENS.where(tokens_t.c.uuid == bindparam("uuid"))
_TOKENS_BY_UUIDS = _TOKENS.where(tokens_t.c.uuid.in_(bindparam("uuids", expanding=True)))
_TOKEN_BY_DIGEST = _TOKENS.where(tokens_t.c.secret_digest == bindparam("digest"))
_TASK_BY_TOKEN = select(
    job_tasks.c.uuid,
    job_tasks.c.job_uuid,
    job_tasks.c.owner_uuid,
    job_tasks.c.lease_expires_at,
    job_tasks.c.token_digest,
).where(
    job_tasks.c.token_digest == bindparam("digest"),
    job_tasks.c.status == TaskStatus.ACTIVE.value,
)
# A canceled task keeps its lease (and so its token's digest) until its worker reports the
# process's exit: a script that calls in meanwhile learns why its token stopped working.
_CANCELED_TASK_BY_TOKEN = select(job_tasks.c.uuid).where(
    job_tasks.c.token_digest == bindparam("digest"),
    job_tasks.c.status == TaskStatus.CANCELED.value,
)
_RECORD_BY_UUID = select(tokens_t).where(tokens_t.c.uuid == bindparam("uuid"))
_INSERT_TOKEN = insert(tokens_t).returning(*tokens_t.c)
_DELETE_TOKEN = delete(tokens_t).where(tokens_t.c.uuid == bindparam("token"))
_ALL_TOKENS = select(tokens_t).order_by(tokens_t.c.created_at, tokens_t.c.uuid)
_UNREVOKED = tokens_t.c.revoked_at.is_(None)


def _stored(row: Row[Any] | None) -> StoredToken | None:
    return None if row is None else _token(row)


def _token(row: Row[Any]) -> StoredToken:
    return StoredToken(token_row(row), row.secret_digest, bool(row.is_admin))


async def token_by_uuid(conn: AsyncConnection, uuid: str) -> StoredToken | None:
    return _stored((await conn.execute(_TOKEN_BY_UUID, {"uuid": uuid})).first())


async def tokens_by_uuids(conn: AsyncConnection, uuids: Collection[str]) -> dict[str, StoredToken]:
    """The stored tokens of these uuids (one statement), by uuid; unknown ones left out."""
    rows = await conn.execute(_TOKENS_BY_UUIDS, {"uuids": sorted(uuids)})
    return {row.uuid: _token(row) for row in rows}


async def token_by_digest(conn: AsyncConnection, digest: bytes) -> StoredToken | None:
    return _stored((await conn.execute(_TOKEN_BY_DIGEST, {"digest": digest})).first())


async def task_by_token(conn: AsyncConnection, digest: bytes) -> TaskToken | None:
    row = (await conn.execute(_TASK_BY_TOKEN, {"digest": digest})).first()
    if row is None:
        return None
    return TaskToken(
        task_uuid=row.uuid,
        job_uuid=row.job_uuid,
        owner_uuid=row.owner_uuid,
        lease_expires_at=utc(row.lease_expires_at),
        token_digest=row.token_digest,
    )


async def canceled_task_by_token(conn: AsyncConnection, digest: bytes) -> str | None:
    """The uuid of a canceled task whose token has this digest."""
    uuid = await conn.scalar(_CANCELED_TASK_BY_TOKEN, {"digest": digest})
    return None if uuid is None else str(uuid)


def _visible(reader: Reader) -> ColumnElement[bool]:
    """Admins see every token, others their own; revoked tokens are gone (Arvados
    deleted them)."""
    return readable_by(reader, tokens_t.c.owner_uuid) & _UNREVOKED


async def readable_token(conn: AsyncConnection, reader: Reader, uuid: str) -> TokenRow | None:
    row = (await conn.execute(_RECORD_BY_UUID.where(_visible(reader)), {"uuid": uuid})).first()
    return None if row is None else token_row(row)


async def list_tokens(
    conn: AsyncConnection, reader: Reader, query: ListQuery, *, cluster_id: str
) -> tuple[list[TokenRow], int | None]:
    rows, total = await run_list(
        conn, tokens_t, query, cluster_id=cluster_id, extra=_visible(reader)
    )
    return [token_row(r) for r in rows], total


async def record_by_uuid(conn: AsyncConnection, uuid: str) -> TokenRow | None:
    """A token's record, revoked or not."""
    row = (await conn.execute(_RECORD_BY_UUID, {"uuid": uuid})).first()
    return None if row is None else token_row(row)


async def all_tokens(conn: AsyncConnection, *, include_revoked: bool = False) -> list[TokenRow]:
    """Every token, oldest first (local administration)."""
    stmt = _ALL_TOKENS if include_revoked else _ALL_TOKENS.where(_UNREVOKED)
    return [token_row(r) for r in await conn.execute(stmt)]


async def insert_token(conn: AsyncConnection, values: dict[str, Any]) -> TokenRow:
    return token_row((await conn.execute(_INSERT_TOKEN, values)).one())


async def delete_token(conn: AsyncConnection, uuid: str) -> None:
    await conn.execute(_DELETE_TOKEN, {"token": uuid})


async def revoke_token(
    conn: AsyncConnection, uuid: str, *, by: str | None, reader: Reader | None, now: dt.datetime
) -> TokenRow | None:
    """Revokes a token that is not revoked yet and, given a reader, that it may read; None
    when there is no such token."""
    visible = _UNREVOKED if reader is None else _visible(reader)
    row = (
        await conn.execute(
            update(tokens_t)
            .where(tokens_t.c.uuid == uuid, visible)
            .values(revoked_at=now, modified_at=now, modified_by_user_uuid=by)
            .returning(*tokens_t.c)
        )
    ).first()
    return None if row is None else token_row(row)
