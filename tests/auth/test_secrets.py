"""Secrets stay secret: hashed at rest, never logged or echoed, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import grpc
import pytest
from jobtask.domain import tokens as token_rules
from jobtask.manager.tokens import TokenManager
from jobtask.store.schema import metadata
from jobtask.v1 import auth_service_pb2, job_service_pb2
from sqlalchemy import text

from tests.auth.conftest import ALICE, Auth
from tests.conftest import Cluster
from tests.core.helpers import claim, create_job

AS, JS = auth_service_pb2, job_service_pb2


async def every_stored_value(auth: Auth) -> str:
    """All rows of all tables, read with plain SQL, as one string (bytes as hex and text)."""
    out: list[str] = []
    async with auth.core.db.read() as conn:
        for table in metadata.sorted_tables:
            for row in await conn.execute(text(f"SELECT * FROM {table.name}")):
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        raw = bytes(value)
                        out += [raw.hex(), raw.decode("latin-1")]
                    else:
                        out.append(str(value))
    return "\n".join(out)


async def test_secrets_are_hashed_at_rest(cluster: Cluster, auth: Auth) -> None:
    _, minted = await auth.mint(user=ALICE)
    made = await auth.stubs(minted).auth.CreateApiClientAuthorization(
        AS.CreateApiClientAuthorizationRequest()
    )
    await cluster.jobs.CreateJob(create_job(script="secret.py"))
    assignment = await claim(cluster)
    secrets_ = [
        minted.rsplit("/", 1)[1],
        made.api_token.rsplit("/", 1)[1],
        assignment.task_token,
    ]
    stored = await every_stored_value(auth)
    for secret in secrets_:
        assert secret not in stored
        assert hashlib.sha256(secret.encode()).hexdigest() in stored  # what is kept instead


async def test_tokens_never_appear_in_logs_or_errors(
    cluster: Cluster, auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    uuid, token = await auth.mint(["GET /arvados/v1/jobs"], user=ALICE)
    secret = token.rsplit("/", 1)[1]
    expired = await auth.expired()
    revoked = await auth.revoked()
    presented = [
        token,  # a scope miss
        f"v2/{uuid}/{secret[:-1]}x",  # a wrong secret for a real token
        secret + "x",  # an unknown bare secret
        expired,
        revoked,
        "v2/" + secret,  # malformed
    ]
    details: list[str] = []
    for bad in presented:
        stubs = auth.stubs(bad)
        for call in (
            stubs.jobs.GetJob(JS.GetJobRequest(uuid="zzzzz-8i9sb-000000000000001")),
            stubs.auth.CreateApiClientAuthorization(AS.CreateApiClientAuthorizationRequest()),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            details.append(err.value.details() or "")
            details.append(str(err.value.trailing_metadata()))
            details.append(str(err.value.debug_error_string()))
    logged = caplog.text
    assert "scope miss" in logged  # the failures were logged, without their tokens
    for bad in presented:
        for piece in {bad, bad.rsplit("/", 1)[-1]}:
            assert piece not in logged
            assert all(piece not in d for d in details)
    assert repr(token_rules.parse_token(token)).count(secret) == 0


async def test_secrets_are_compared_in_constant_time(
    cluster: Cluster, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    class Hmac:
        compare_digest = staticmethod(spy)

    monkeypatch.setattr(token_rules, "hmac", Hmac)
    core = auth.core
    uuid, token = await auth.mint(user=ALICE)
    await cluster.jobs.CreateJob(create_job(script="ct.py"))
    assignment = await claim(cluster)
    manager = TokenManager(core.db, core.settings, root_token="root-secret")
    for presented in (token, token.rsplit("/", 1)[1], assignment.task_token, "root-secret"):
        calls.clear()
        assert await manager.authenticate(presented) is not None
        assert calls, f"no constant-time comparison for {presented[:6]}..."
    calls.clear()
    assert await manager.authenticate(f"v2/{uuid}/{'0' * 50}") is None
    assert calls  # the wrong secret was compared, not looked up
