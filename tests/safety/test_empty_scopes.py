"""An empty scope list permits nothing, whichever door the token was made through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from jobtask.v1 import auth_service_pb2, job_service_pb2

from tests.auth.conftest import Auth, code_of
from tests.conftest import Cluster
from tests.gateway.conftest import Stack

AS, JS = auth_service_pb2, job_service_pb2


async def test_grpc_create_with_empty_scopes_named_in_the_mask(
    cluster: Cluster, auth: Auth
) -> None:
    stubs = auth.stubs(cluster.root_token)
    request = AS.CreateApiClientAuthorizationRequest(
        api_client_authorization=AS.ApiClientAuthorization(scopes=[]),
        field_mask=FieldMask(paths=["scopes"]),
    )
    made = await stubs.auth.CreateApiClientAuthorization(request)
    assert list(made.scopes) == []
    empty = auth.stubs(made.api_token)
    code, _ = await code_of(empty.jobs.ListJobs(JS.ListJobsRequest()))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    # Only `current` stays open to it, as in Arvados.
    me = await empty.auth.CurrentApiClientAuthorization(AS.CurrentApiClientAuthorizationRequest())
    assert list(me.scopes) == []
    # Without the mask, an empty list is "not given": the creator's scopes.
    inherited = await stubs.auth.CreateApiClientAuthorization(
        AS.CreateApiClientAuthorizationRequest(api_client_authorization=AS.ApiClientAuthorization())
    )
    assert list(inherited.scopes) == ["all"]


async def test_rest_create_with_empty_scopes(stack: Stack) -> None:
    made = await stack.client.post(
        "/arvados/v1/api_client_authorizations", json={"api_client_authorization": {"scopes": []}}
    )
    assert made.status_code == 200, made.text
    assert made.json()["scopes"] == []
    token = made.json()["api_token"]
    listed = await stack.client.get(
        "/arvados/v1/jobs", headers={"Authorization": f"Bearer {token}"}
    )
    assert listed.status_code == 403, listed.text
    # Not naming scopes at all still means the creator's.
    plain = await stack.client.post(
        "/arvados/v1/api_client_authorizations", json={"api_client_authorization": {}}
    )
    assert plain.json()["scopes"] == ["all"]


def test_cli_token_create_with_no_scopes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTASK_")}
    # `token` commands use a database that exists; `db upgrade` makes one.
    subprocess.run(
        [sys.executable, "-m", "jobtask.cli.main", "db", "upgrade", "--database-url", url],
        capture_output=True,
        env=env,
        check=True,
    )
    for given in (["--scopes"], ["--scopes", "[]"]):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "jobtask.cli.main",
                "token",
                "create",
                "--database-url",
                url,
                *given,
                "--json",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert json.loads(out.stdout)["scopes"] == [], given
