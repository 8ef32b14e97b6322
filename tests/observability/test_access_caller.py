"""Issue 18: the gateway's HTTP access lines name the caller's user uuid (which the services,
who verify the token, send back with each answer) and never the token."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.observability.conftest import gateway_of, json_lines
from tests.scale.conftest import ROOT_TOKEN, Topology

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

USER = "zzzzz-tpzed-observedcaller1"
MISSING_JOB = "zzzzz-8i9sb-000000000000000"


async def test_gateway_access_lines_name_the_caller(sqlite_topology: Topology) -> None:
    topology = sqlite_topology
    logs_json: dict[str, Any] = {"JOBTASK_LOG_FORMAT": "json"}
    jobs, tasks = await asyncio.gather(
        topology.serve("jobs", "jobs", **logs_json), topology.serve("tasks", "tasks", **logs_json)
    )
    gateway = await gateway_of(topology, jobs, tasks, **logs_json)
    created = json.loads(await topology.cli("token", "create", "--user", USER, "--json"))
    token = created["api_token"]
    assert created["owner_uuid"] == USER
    bad_token = "not-a-real-token-0123456789"

    async with httpx.AsyncClient(base_url=f"http://{gateway.addr}", timeout=60) as http:
        listed = await http.get(
            "/arvados/v1/jobs",
            headers={"Authorization": f"OAuth2 {token}", "X-Request-Id": "req-caller-ok"},
        )
        assert listed.status_code == 200, listed.text
        # A refused request names its caller too (the service knew who asked).
        missing = await http.get(
            f"/arvados/v1/jobs/{MISSING_JOB}",
            params={"api_token": token},
            headers={"X-Request-Id": "req-caller-404"},
        )
        assert missing.status_code == 404, missing.text
        refused = await http.get(
            "/arvados/v1/jobs",
            headers={"Authorization": f"OAuth2 {bad_token}", "X-Request-Id": "req-caller-401"},
        )
        assert refused.status_code == 401, refused.text
        # An SSE watch (a gRPC stream the gateway cancels when its client leaves) too.
        made = await http.post(
            "/arvados/v1/jobs",
            json={"job": {"script": "watched.py"}},
            headers={"Authorization": f"OAuth2 {token}"},
        )
        assert made.status_code == 200, made.text
        async with http.stream(
            "GET",
            f"/arvados/v1/jobs/{made.json()['uuid']}/watch",
            headers={"Authorization": f"OAuth2 {token}", "X-Request-Id": "req-caller-sse"},
        ) as watch:
            assert watch.status_code == 200
            async for line in watch.aiter_lines():
                if line.startswith("data:"):
                    break  # the snapshot: the stream is open; leave

    await topology.stop_all()
    access = {
        line.get("request_id"): line
        for line in json_lines(gateway.log())
        if line["logger"] == "jobtask.access"
    }
    assert access["req-caller-ok"]["status"] == 200
    assert access["req-caller-ok"]["caller_uuid"] == USER, access
    assert access["req-caller-404"]["status"] == 404
    assert access["req-caller-404"]["caller_uuid"] == USER, access
    assert access["req-caller-401"]["status"] == 401
    assert "caller_uuid" not in access["req-caller-401"], access
    assert access["req-caller-sse"]["caller_uuid"] == USER, access

    for part in topology.parts:
        log = part.log()
        for secret in (ROOT_TOKEN, token, bad_token, token.rpartition("/")[2]):
            assert secret not in log, f"{part.name} logged a token"
