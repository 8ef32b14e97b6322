"""API tokens: verifying a presented token, and the api_client_authorizations use cases.

Three kinds of token are accepted, all in either Arvados form where they have a record:
- the configured system root token (JOBTASK_SYSTEM_ROOT_TOKEN), held in memory only;
- API tokens (`<cluster>-gj3su-...` records, stored as a SHA-256 of the secret), acting for
  their owner: the system user's tokens act as the job manager itself, an admin's as an admin;
- a claimed task's own token (job_tasks.token_digest), valid while the task is active under
  that lease, scoped to its task (jobtask.domain.scopes.task_scopes) and never admin.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from jobtask.domain import scopes as scope_rules
from jobtask.domain import tokens as token_rules
from jobtask.domain.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    shutting_down,
)
from jobtask.domain.query import ListQuery
from jobtask.domain.uuids import TOKEN_INFIX, USER_INFIX, check_uuid, new_uuid
from jobtask.manager.context import Caller, Settings, utcnow
from jobtask.store import tokens as token_store
from jobtask.store import users
from jobtask.store.database import Database
from jobtask.store.grouped import Drainer
from jobtask.store.rows import TokenRow
from jobtask.store.tokens import StoredToken
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "Credentials",
    "TokenManager",
    "ensure_root_token",
    "ensure_user",
    "issue_token",
    "list_tokens",
    "revoke_token",
    "root_token_uuid",
]


@dataclass(frozen=True)
class Credentials:
    """A verified token: who it acts for, what it may do, and its record if it has one."""

    caller: Caller
    scopes: tuple[str, ...]
    expires_at: dt.datetime | None = None
    record: TokenRow | None = None


def root_token_uuid(settings: Settings) -> str:
    """The record of the root token `jobtask up` generates (one per cluster)."""
    return f"{settings.cluster_id}-{TOKEN_INFIX}-000000000000000"


def _usable(record: TokenRow, now: dt.datetime) -> bool:
    expires = record.expires_at
    return record.revoked_at is None and (expires is None or expires > now)


class _Lookups(Drainer):
    """Token records by uuid for concurrent calls, read together: a call that arrives while
    a lookup is in flight waits for the next one, which reads the records of every call
    waiting by then in one statement (each uuid once: most calls present the same few
    tokens). No record is kept: each call's record is read by a statement that began after
    the call arrived, so a revocation or expiry committed before a call -- by any process on
    the store -- refuses it, as one statement a call would. A lone call (and every call on
    SQLite, whose statements run inline: nothing arrives while one runs) reads its own."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        # A read is in flight: the lone call's own, or the drainer's.
        self._busy = False
        self._waiting: dict[str, list[asyncio.Future[StoredToken | None]]] = {}

    async def get(self, uuid: str) -> StoredToken | None:
        if not self._busy:
            self._busy = True
            try:
                async with self.db.read() as conn:
                    return await token_store.token_by_uuid(conn, uuid)
            finally:
                self._busy = False
                if self._waiting:
                    self._busy = True
                    self._start()
        future: asyncio.Future[StoredToken | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(uuid, []).append(future)
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, {}
            try:
                async with self.db.read() as conn:
                    found = await token_store.tokens_by_uuids(conn, group)
            except Exception as exc:  # the store failed: every call in the group hears it
                _answer(group, exc)
                continue
            except asyncio.CancelledError:
                # The reader is canceled only as the server stops: its calls hear so.
                _answer(group, shutting_down())
                raise
            for uuid, futures in group.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(uuid))

    def _abandon(self, error: Exception) -> None:
        """No shared read now (the next call reads its own)."""
        self._busy = False
        leftover, self._waiting = self._waiting, {}
        _answer(leftover, error)


def _answer(waiting: dict[str, list[asyncio.Future[StoredToken | None]]], error: Exception) -> None:
    """Every call waiting for these tokens' records hears `error` instead."""
    for futures in waiting.values():
        for future in futures:
            if not future.done():
                future.set_exception(error)


class TokenManager:
    def __init__(self, db: Database, settings: Settings, root_token: str | None = None) -> None:
        self.db = db
        self.settings = settings
        self._root_digest = token_rules.digest(root_token) if root_token else None
        self._lookups = _Lookups(db)

    # -- authentication -----------------------------------------------------------------

    async def authenticate(self, raw: str) -> Credentials | None:
        """The credentials a presented token stands for; None if it stands for nothing."""
        raw = raw.strip()
        # The configured root token may have any shape: compare it before parsing.
        if self._root_digest is not None and token_rules.digests_equal(
            token_rules.digest(raw), self._root_digest
        ):
            return Credentials(self.settings.system_caller(), (scope_rules.ALL,))
        parsed = token_rules.parse_token(raw)
        if parsed is None:
            return None
        secret_digest = token_rules.digest(parsed.secret)
        now = utcnow()
        if parsed.uuid is not None:
            return self._credentials(await self._lookups.get(parsed.uuid), secret_digest, now)
        async with self.db.read() as conn:
            stored = await token_store.token_by_digest(conn, secret_digest)
            if stored is not None:
                return self._credentials(stored, secret_digest, now)
            return await self._task_credentials(conn, secret_digest, now)

    def _credentials(
        self, stored: StoredToken | None, secret_digest: bytes, now: dt.datetime
    ) -> Credentials | None:
        if stored is None or not token_rules.digests_equal(stored.secret_digest, secret_digest):
            return None
        record = stored.record
        if not _usable(record, now):
            return None
        return Credentials(
            self._caller(record.owner_uuid, stored.owner_is_admin),
            tuple(record.scopes),
            record.expires_at,
            record,
        )

    def _caller(self, user_uuid: str, is_admin: bool) -> Caller:
        if user_uuid == self.settings.system_user:
            return self.settings.system_caller()
        return Caller(user_uuid=user_uuid, is_admin=is_admin)

    async def _task_credentials(
        self, conn: AsyncConnection, secret_digest: bytes, now: dt.datetime
    ) -> Credentials | None:
        task = await token_store.task_by_token(conn, secret_digest)
        if task is None:
            canceled = await token_store.canceled_task_by_token(conn, secret_digest)
            if canceled is not None:
                raise Unauthenticated(
                    f"task canceled: {canceled} was canceled, and its token ended with it"
                )
            return None
        if not token_rules.digests_equal(task.token_digest, secret_digest):
            return None
        expires = task.lease_expires_at
        if expires is None or expires <= now:
            return None  # the lease ended: the reaper has not caught up yet
        # Never admin, even when the job's owner is: the task acts within its own job.
        caller = Caller(user_uuid=task.owner_uuid, task_uuid=task.task_uuid)
        scopes = scope_rules.task_scopes(task.job_uuid, task.task_uuid)
        return Credentials(caller, tuple(scopes), expires)

    # -- the api_client_authorizations resource -------------------------------------------

    async def create(
        self,
        creds: Credentials,
        *,
        scopes: Sequence[str] | None = None,
        expires_at: dt.datetime | None = None,
        owner_uuid: str = "",
    ) -> tuple[TokenRow, str]:
        """A new token from the caller's: equal or narrower scopes, expiring no later.
        Returns the record and the token in its v2 form, which is shown only now."""
        caller = creds.caller
        owner = owner_uuid or caller.user_uuid
        if owner != caller.user_uuid:
            if not caller.is_admin:
                raise PermissionDenied("only admins may create tokens for other users")
            self._check_user_uuid(owner, "owner_uuid")
        # None: not given, the caller's own; [] stays empty and permits nothing.
        wanted = scope_rules.check_scopes(scopes) if scopes is not None else list(creds.scopes)
        wider = scope_rules.narrower(wanted, creds.scopes)
        if wider is not None:
            raise PermissionDenied(
                f"scope {wider!r} is wider than the scopes of the token making the request"
            )
        now = utcnow()
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument("expires_at", "is in the past")
        if creds.expires_at is not None:
            if expires_at is None:
                expires_at = creds.expires_at
            elif expires_at > creds.expires_at:
                raise PermissionDenied(
                    "expires_at: a token cannot outlive the token making the request"
                )

        async def run(conn: AsyncConnection) -> tuple[TokenRow, str]:
            await ensure_user(
                conn, self.settings, owner, is_admin=owner == self.settings.system_user
            )
            return await _insert_token(
                conn, self.settings, owner, wanted, expires_at, modified_by=caller.user_uuid
            )

        return await self.db.transact(run)

    def _check_user_uuid(self, uuid: str, field: str) -> None:
        check_uuid(uuid, USER_INFIX, field)
        if not uuid.startswith(self.settings.cluster_id + "-"):
            raise InvalidArgument(
                field, f"{uuid!r} is not a user of cluster {self.settings.cluster_id}"
            )

    async def get(self, caller: Caller, uuid: str) -> TokenRow:
        check_uuid(uuid, TOKEN_INFIX, "uuid")
        async with self.db.read() as conn:
            record = await token_store.readable_token(conn, caller, uuid)
        if record is None:
            raise NotFound(f"api_client_authorization {uuid} not found")
        return record

    async def list(self, caller: Caller, query: ListQuery) -> tuple[list[TokenRow], int | None]:
        async with self.db.read() as conn:
            return await token_store.list_tokens(
                conn, caller, query, cluster_id=self.settings.cluster_id
            )

    async def revoke(self, caller: Caller, uuid: str) -> TokenRow:
        check_uuid(uuid, TOKEN_INFIX, "uuid")

        async def run(conn: AsyncConnection) -> TokenRow:
            return await _revoke(conn, uuid, caller.user_uuid, caller)

        return await self.db.transact(run)

    def current(self, creds: Credentials) -> TokenRow:
        """The token of this call; a token without a record gets a synthetic one."""
        if creds.record is not None:
            return creds.record
        return TokenRow(
            uuid="",
            owner_uuid=creds.caller.user_uuid,
            scopes=list(creds.scopes),
            expires_at=creds.expires_at,
            revoked_at=None,
            created_at=None,
            modified_at=None,
            modified_by_user_uuid=None,
        )


# -- shared statements ----------------------------------------------------------------------


async def ensure_user(
    conn: AsyncConnection, settings: Settings, uuid: str, *, is_admin: bool = False
) -> None:
    """Creates the user if missing; an existing user keeps its admin flag unless raised."""
    await users.ensure_user(conn, uuid, is_admin=is_admin, now=utcnow())


async def _insert_token(
    conn: AsyncConnection,
    settings: Settings,
    owner_uuid: str,
    scopes: Sequence[str],
    expires_at: dt.datetime | None,
    *,
    modified_by: str | None,
    uuid: str | None = None,
) -> tuple[TokenRow, str]:
    secret = token_rules.new_secret()
    now = utcnow()
    record = await token_store.insert_token(
        conn,
        {
            "uuid": uuid or new_uuid(settings.cluster_id, TOKEN_INFIX),
            "owner_uuid": owner_uuid,
            "secret_digest": token_rules.digest(secret),
            "scopes": list(scopes),
            "expires_at": expires_at,
            "created_at": now,
            "modified_at": now,
            "modified_by_user_uuid": modified_by,
        },
    )
    return record, token_rules.format_v2(record.uuid, secret)


async def _revoke(
    conn: AsyncConnection, uuid: str, by: str | None, reader: Caller | None
) -> TokenRow:
    """Revokes a token not revoked yet that the reader (if any) may read."""
    record = await token_store.revoke_token(conn, uuid, by=by, reader=reader, now=utcnow())
    if record is None:
        raise NotFound(f"api_client_authorization {uuid} not found")
    return record


# -- local administration: `jobtask up` and `jobtask token ...`, straight on the database -----


async def issue_token(
    db: Database,
    settings: Settings,
    *,
    user_uuid: str | None = None,
    is_admin: bool = False,
    scopes: Sequence[str] = (scope_rules.ALL,),
    expires_at: dt.datetime | None = None,
) -> tuple[TokenRow, str]:
    """A token for a user (default: the system user), creating the user if missing.
    Like Arvados's admin tasks, this needs database access, not a token: it is how a lost
    root token is replaced."""
    owner = user_uuid or settings.system_user
    check_uuid(owner, USER_INFIX, "user")
    wanted = scope_rules.check_scopes(list(scopes))
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidArgument("expires", "is in the past")

    async def run(conn: AsyncConnection) -> tuple[TokenRow, str]:
        admin = is_admin or owner == settings.system_user
        await ensure_user(conn, settings, owner, is_admin=admin)
        return await _insert_token(conn, settings, owner, wanted, expires_at, modified_by=None)

    return await db.transact(run)


async def ensure_root_token(db: Database, settings: Settings, env_value: str | None) -> str | None:
    """For `jobtask up`: with JOBTASK_SYSTEM_ROOT_TOKEN set (`env_value`), nothing to do.
    Otherwise keeps one generated root token in the database, so a restart keeps it; returns
    a newly generated token (to print once), or None when a usable one exists already."""
    if env_value:
        return None
    uuid = root_token_uuid(settings)

    async def run(conn: AsyncConnection) -> str | None:
        await ensure_user(conn, settings, settings.system_user, is_admin=True)
        record = await token_store.record_by_uuid(conn, uuid)
        if record is not None:
            if _usable(record, utcnow()):
                return None
            # Revoked or expired: replace it under the same uuid.
            await token_store.delete_token(conn, uuid)
        _, token = await _insert_token(
            conn,
            settings,
            settings.system_user,
            [scope_rules.ALL],
            None,
            modified_by=None,
            uuid=uuid,
        )
        return token

    return await db.transact(run)


async def list_tokens(db: Database, *, include_revoked: bool = False) -> list[TokenRow]:
    async with db.read() as conn:
        return await token_store.all_tokens(conn, include_revoked=include_revoked)


async def revoke_token(db: Database, uuid: str) -> TokenRow:
    check_uuid(uuid, TOKEN_INFIX, "uuid")

    async def run(conn: AsyncConnection) -> TokenRow:
        return await _revoke(conn, uuid, None, None)

    return await db.transact(run)
