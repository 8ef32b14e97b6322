"""The caller's token reaches the services as `authorization: Bearer <token>`, in every form.

A claimed task's token may update only its own task, so a 403 for another task and a 200 for
its own prove that the token arrived; no token at all is 401, a bad one 401 too.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from jobtask.gateway.endpoints import token_of
from starlette.requests import Request

from tests.gateway.conftest import Stack


async def claim_one(stack: Stack) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two jobs; a worker claims one seed task. Returns (assignment, the other job's task)."""
    jobs = [await stack.create_job(script=f"s{i}.py") for i in range(2)]
    response = await stack.client.post(
        "/arvados/v1/job_tasks/claim",
        json={"worker": {"worker_id": "w1", "node_name": "n1", "free_slots": 1}, "max_tasks": 1},
    )
    assert response.status_code == 200, response.text
    assignment = response.json()["assignments"][0]
    other_job = next(j for j in jobs if j["uuid"] != assignment["job"]["uuid"])
    listed = await stack.client.get(
        "/arvados/v1/job_tasks",
        params={"filters": json.dumps([["job_uuid", "=", other_job["uuid"]]])},
    )
    return assignment, listed.json()["items"][0]


@pytest.mark.parametrize("form", ["OAuth2", "Bearer", "api_token", "oauth_token", "form"])
async def test_token_is_forwarded(stack: Stack, form: str) -> None:
    assignment, other = await claim_one(stack)
    token = assignment["task_token"]
    mine = assignment["task"]["uuid"]

    async def put(uuid: str) -> int:
        url = f"{stack.gateway.url}/arvados/v1/job_tasks/{uuid}"
        body = {"job_task": json.dumps({"progress": 0.5})}
        async with httpx.AsyncClient() as bare:  # no root token here
            if form in ("OAuth2", "Bearer"):
                auth = {"Authorization": f"{form} {token}"}
                r = await bare.put(url, json=body, headers=auth)
            elif form == "form":
                r = await bare.put(
                    url,
                    content=urlencode({**body, "api_token": token}),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            else:
                r = await bare.put(url, json=body, params={form: token})
        return r.status_code

    assert await put(other["uuid"]) == 403
    assert await put(mine) == 200


async def test_no_token_or_a_bad_one_is_401(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway.url) as bare:
        for headers in ({}, {"Authorization": "Bearer no-such-token"}):
            response = await bare.get("/arvados/v1/jobs", headers=headers)
            assert response.status_code == 401, response.text
            assert response.json()["errors"]
        # Discovery needs no token.
        assert (await bare.get("/discovery/v1/apis/arvados/v1/rest")).status_code == 200


def request_with(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


def test_token_sources_in_arvados_order() -> None:
    assert token_of(request_with({"Authorization": "OAuth2 abc/def-1"}), [], None) == "abc/def-1"
    assert token_of(request_with({"Authorization": "Bearer v2/x/y"}), [], None) == "v2/x/y"
    assert token_of(request_with({"Authorization": "Basic Zm9v"}), [], None) is None
    header = request_with({"Authorization": "Bearer h"})
    assert token_of(header, [("api_token", "p")], None) == "p"
    assert token_of(header, [("oauth_token", "o")], None) == "o"
    assert token_of(header, [], {"api_token": "j"}) == "j"
