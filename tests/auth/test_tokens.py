"""API tokens: both Arvados forms, the root token, and the api_client_authorizations service."""

from __future__ import annotations

import datetime as dt

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jobtask.manager.context import Settings
from jobtask.manager.tokens import ensure_root_token, revoke_token, root_token_uuid
from jobtask.store.database import Database
from jobtask.v1 import auth_service_pb2, job_service_pb2

from tests.auth.conftest import ALICE, BOB, SYSTEM, Auth, code_of
from tests.conftest import Cluster
from tests.core.helpers import create_job

AS, JS = auth_service_pb2, job_service_pb2
NOT_LOGGED_IN = (grpc.StatusCode.UNAUTHENTICATED, "Not logged in")
FORBIDDEN = (grpc.StatusCode.PERMISSION_DENIED, "Forbidden")


def create(
    scopes: list[str] | None = None, **fields: object
) -> AS.CreateApiClientAuthorizationRequest:
    token = AS.ApiClientAuthorization(scopes=scopes or [], **fields)  # type: ignore[arg-type]
    return AS.CreateApiClientAuthorizationRequest(api_client_authorization=token)


async def test_both_token_forms_and_both_schemes(cluster: Cluster, auth: Auth) -> None:
    uuid, token = await auth.mint(user=ALICE)
    secret = token.rsplit("/", 1)[1]
    assert token == f"v2/{uuid}/{secret}"
    for presented in (token, secret):
        for scheme in ("Bearer", "OAuth2", "bearer"):
            md = (("authorization", f"{scheme} {presented}"),)
            me = await auth.stubs(None).auth.CurrentApiClientAuthorization(
                AS.CurrentApiClientAuthorizationRequest(), metadata=md
            )
            assert (me.uuid, me.owner_uuid) == (uuid, ALICE)
    # A v2 token whose secret belongs to another token is nobody.
    other_uuid, _ = await auth.mint(user=BOB)
    stub = auth.stubs(f"v2/{other_uuid}/{secret}").auth
    assert (
        await code_of(stub.CurrentApiClientAuthorization(AS.CurrentApiClientAuthorizationRequest()))
        == NOT_LOGGED_IN
    )


async def test_no_token_or_a_bad_one_is_not_logged_in(auth: Auth) -> None:
    for token in (None, "", "nonsense", "v2/zzzzz-gj3su-000000000000000/x", "v2/broken"):
        stubs = auth.stubs(token or None)
        assert await code_of(stubs.jobs.ListJobs(JS.ListJobsRequest())) == NOT_LOGGED_IN
    md = (("authorization", "Basic dXNlcjpwYXNz"),)
    stubs = auth.stubs(None)
    assert await code_of(stubs.jobs.ListJobs(JS.ListJobsRequest(), metadata=md)) == NOT_LOGGED_IN


async def test_health_and_reflection_stay_open(cluster: Cluster) -> None:
    async with grpc.aio.insecure_channel(cluster.jobs_addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service="jobtask.v1.JobService"))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_root_token_from_the_environment_is_the_system(cluster: Cluster, auth: Auth) -> None:
    me = await auth.stubs(cluster.root_token).auth.CurrentApiClientAuthorization(
        AS.CurrentApiClientAuthorizationRequest()
    )
    assert (me.uuid, me.owner_uuid, list(me.scopes), me.api_token) == ("", SYSTEM, ["all"], "")


async def test_generated_root_token_survives_a_restart(database_url: str) -> None:
    settings = Settings()
    db = Database(database_url)
    try:
        from jobtask.store import migrate

        await migrate.upgrade(db)
        assert await ensure_root_token(db, settings, "from-the-environment") is None
        token = await ensure_root_token(db, settings, None)
        assert token is not None and token.startswith(f"v2/{root_token_uuid(settings)}/")
        assert await ensure_root_token(db, settings, None) is None  # kept, not printed again
        from jobtask.manager.tokens import TokenManager

        creds = await TokenManager(db, settings).authenticate(token)
        assert creds is not None and creds.caller.is_system and creds.scopes == ("all",)
        # Revoked: the next `jobtask up` makes a new one.
        await revoke_token(db, root_token_uuid(settings))
        assert await TokenManager(db, settings).authenticate(token) is None
        again = await ensure_root_token(db, settings, None)
        assert again is not None and again != token
        assert await TokenManager(db, settings).authenticate(again) is not None
    finally:
        await db.dispose()


async def test_create_narrower_tokens_only(auth: Auth) -> None:
    _, token = await auth.mint(
        ["GET /arvados/v1/jobs/", "POST /arvados/v1/api_client_authorizations"], user=ALICE
    )
    stub = auth.stubs(token).auth
    job = "zzzzz-8i9sb-000000000000001"
    narrower = await stub.CreateApiClientAuthorization(create([f"GET /arvados/v1/jobs/{job}"]))
    assert narrower.api_token.startswith(f"v2/{narrower.uuid}/")
    assert list(narrower.scopes) == [f"GET /arvados/v1/jobs/{job}"]
    assert narrower.owner_uuid == ALICE and narrower.kind == "arvados#apiClientAuthorization"
    # Empty scopes on create: the creator's own.
    same = await stub.CreateApiClientAuthorization(create())
    assert list(same.scopes) == [
        "GET /arvados/v1/jobs/",
        "POST /arvados/v1/api_client_authorizations",
    ]
    for wider in (
        ["all"],
        ["GET /arvados/v1/jobs"],
        ["GET /arvados/v1/"],
        ["DELETE /arvados/v1/jobs/x"],
    ):
        code, details = await code_of(stub.CreateApiClientAuthorization(create(wider)))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "wider" in details, wider
    code, details = await code_of(stub.CreateApiClientAuthorization(create(["GET jobs"])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "scopes[0]" in details
    # The new token works within its scopes, and only there.
    child = auth.stubs(narrower.api_token)
    assert await code_of(child.jobs.GetJob(JS.GetJobRequest(uuid=job))) == (
        grpc.StatusCode.NOT_FOUND,
        f"job {job} not found",
    )
    assert await code_of(child.jobs.ListJobs(JS.ListJobsRequest())) == FORBIDDEN


async def test_a_token_cannot_outlive_its_creator(auth: Auth) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    _, token = await auth.mint(user=ALICE, expires_at=soon)
    stub = auth.stubs(token).auth
    inherited = await stub.CreateApiClientAuthorization(create())
    assert inherited.expires_at.ToDatetime(tzinfo=dt.UTC) == soon.replace(
        microsecond=soon.microsecond
    )
    later = Timestamp()
    later.FromDatetime(soon + dt.timedelta(days=1))
    code, details = await code_of(stub.CreateApiClientAuthorization(create(expires_at=later)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "outlive" in details
    past = Timestamp()
    past.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    code, details = await code_of(stub.CreateApiClientAuthorization(create(expires_at=past)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "expires_at" in details


async def test_list_get_and_revoke_own_tokens(auth: Auth) -> None:
    alice_uuid, alice_token = await auth.mint(user=ALICE)
    bob_uuid, bob_token = await auth.mint(user=BOB)
    alice = auth.stubs(alice_token).auth
    extra = await alice.CreateApiClientAuthorization(create(["GET /arvados/v1/jobs"]))
    listing = await alice.ListApiClientAuthorizations(AS.ListApiClientAuthorizationsRequest())
    assert {t.uuid for t in listing.items} == {alice_uuid, extra.uuid}
    assert listing.kind == "arvados#apiClientAuthorizationList" and listing.items_available == 2
    assert all(t.api_token == "" for t in listing.items)  # secrets are shown once, at creation
    # Bob's token is invisible to Alice; the system (admin) sees both.
    code, _ = await code_of(
        alice.GetApiClientAuthorization(AS.GetApiClientAuthorizationRequest(uuid=bob_uuid))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await code_of(
        alice.DeleteApiClientAuthorization(AS.DeleteApiClientAuthorizationRequest(uuid=bob_uuid))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    root = auth.stubs(auth.cluster.root_token).auth
    everyone = await root.ListApiClientAuthorizations(AS.ListApiClientAuthorizationsRequest())
    assert {alice_uuid, bob_uuid, extra.uuid} <= {t.uuid for t in everyone.items}
    # Revoke: answered with the object, then the token is dead and gone from listings.
    revoked = await alice.DeleteApiClientAuthorization(
        AS.DeleteApiClientAuthorizationRequest(uuid=extra.uuid)
    )
    assert revoked.uuid == extra.uuid and revoked.HasField("revoked_at")
    dead = auth.stubs(extra.api_token)
    assert await code_of(dead.jobs.ListJobs(JS.ListJobsRequest())) == NOT_LOGGED_IN
    listing = await alice.ListApiClientAuthorizations(AS.ListApiClientAuthorizationsRequest())
    assert [t.uuid for t in listing.items] == [alice_uuid]
    # Revoking the token in use works too; its next call is not logged in.
    await alice.DeleteApiClientAuthorization(
        AS.DeleteApiClientAuthorizationRequest(uuid=alice_uuid)
    )
    assert (
        await code_of(alice.ListApiClientAuthorizations(AS.ListApiClientAuthorizationsRequest()))
        == NOT_LOGGED_IN
    )
    assert bob_token  # untouched
    assert (
        await auth.stubs(bob_token).auth.CurrentApiClientAuthorization(
            AS.CurrentApiClientAuthorizationRequest()
        )
    ).uuid == bob_uuid


async def test_current_is_always_allowed(auth: Auth) -> None:
    uuid, token = await auth.mint([], user=ALICE)
    stubs = auth.stubs(token)
    me = await stubs.auth.CurrentApiClientAuthorization(AS.CurrentApiClientAuthorizationRequest())
    assert (me.uuid, list(me.scopes), me.href) == (uuid, [], f"/api_client_authorizations/{uuid}")
    assert await code_of(stubs.jobs.ListJobs(JS.ListJobsRequest())) == FORBIDDEN


async def test_admins_may_create_tokens_for_other_users(auth: Auth) -> None:
    _, alice_token = await auth.mint(user=ALICE)
    alice = auth.stubs(alice_token).auth
    code, _ = await code_of(alice.CreateApiClientAuthorization(create(owner_uuid=BOB)))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    root = auth.stubs(auth.cluster.root_token)
    carol = "zzzzz-tpzed-ca1000000000000"
    made = await root.auth.CreateApiClientAuthorization(create(["all"], owner_uuid=carol))
    assert made.owner_uuid == carol
    # Carol is a plain user: she sees her own jobs only.
    await root.jobs.CreateJob(create_job(script="system.py"))
    as_carol = auth.stubs(made.api_token)
    mine = await as_carol.jobs.CreateJob(create_job(script="carol.py"))
    listing = await as_carol.jobs.ListJobs(JS.ListJobsRequest())
    assert [j.uuid for j in listing.items] == [mine.uuid]
    code, details = await code_of(
        root.auth.CreateApiClientAuthorization(create(owner_uuid="yyyyy-tpzed-000000000000001"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "owner_uuid" in details


async def test_a_token_listing_keeps_only_what_select_names(auth: Auth) -> None:
    alice_uuid, alice_token = await auth.mint(user=ALICE)
    alice = auth.stubs(alice_token).auth
    picked = await alice.ListApiClientAuthorizations(
        AS.ListApiClientAuthorizationsRequest(select=["uuid", "scopes"])
    )
    (item,) = picked.items
    assert item.uuid == alice_uuid
    assert {f.name for f, _ in item.ListFields()} <= {"uuid", "scopes", "kind"}
    assert not item.HasField("created_at") and not item.owner_uuid
    whole = await alice.ListApiClientAuthorizations(AS.ListApiClientAuthorizationsRequest())
    assert whole.items[0].HasField("created_at") and whole.items[0].owner_uuid
