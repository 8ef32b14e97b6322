"""Tokens for the auth tests: minted straight on the cluster's database (as `jobtask token
create` does), and stubs whose calls carry them."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from jobtask.manager.tokens import issue_token, revoke_token
from jobtask.store.schema import api_client_authorizations
from jobtask.v1 import auth_service_pb2_grpc, job_service_pb2_grpc, task_service_pb2_grpc
from sqlalchemy import update

from tests.conftest import Cluster, token_channel

SYSTEM = "zzzzz-tpzed-000000000000000"
ALICE = "zzzzz-tpzed-a11ce0000000000"
BOB = "zzzzz-tpzed-b0b000000000000"


@dataclass
class Stubs:
    jobs: job_service_pb2_grpc.JobServiceStub
    tasks: task_service_pb2_grpc.TaskServiceStub
    auth: auth_service_pb2_grpc.ApiClientAuthorizationServiceStub
    jobs_channel: grpc.aio.Channel
    tasks_channel: grpc.aio.Channel


@dataclass
class Auth:
    """Mints tokens on a running cluster and connects with them."""

    cluster: Cluster
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @property
    def core(self) -> Any:
        return self.cluster.services.core

    async def mint(
        self,
        scopes: Sequence[str] = ("all",),
        *,
        user: str | None = None,
        admin: bool = False,
        expires_at: dt.datetime | None = None,
    ) -> tuple[str, str]:
        """(uuid, token in its v2 form); user None: the system user."""
        record, token = await issue_token(
            self.core.db,
            self.core.settings,
            user_uuid=user,
            is_admin=admin,
            scopes=list(scopes),
            expires_at=expires_at,
        )
        return record.uuid, token

    async def expired(self, scopes: Sequence[str] = ("all",)) -> str:
        uuid, token = await self.mint(
            scopes, expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        )

        async def expire(conn: Any) -> None:
            await conn.execute(
                update(api_client_authorizations)
                .where(api_client_authorizations.c.uuid == uuid)
                .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
            )

        await self.core.db.transact(expire)
        return token

    async def revoked(self, scopes: Sequence[str] = ("all",)) -> str:
        uuid, token = await self.mint(scopes)
        await revoke_token(self.core.db, uuid)
        return token

    def stubs(self, token: str | None) -> Stubs:
        jobs = token_channel(self.cluster.jobs_addr, token)
        tasks = token_channel(self.cluster.tasks_addr, token)
        self.channels += [jobs, tasks]
        return Stubs(
            job_service_pb2_grpc.JobServiceStub(jobs),
            task_service_pb2_grpc.TaskServiceStub(tasks),
            auth_service_pb2_grpc.ApiClientAuthorizationServiceStub(jobs),
            jobs,
            tasks,
        )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close(None)


@pytest.fixture
async def auth(cluster: Cluster) -> AsyncIterator[Auth]:
    helper = Auth(cluster)
    try:
        yield helper
    finally:
        await helper.close()


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    """The status of a unary call: OK, or the error's code and details."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""
