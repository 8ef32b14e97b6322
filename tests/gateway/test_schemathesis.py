"""Property-based: schemathesis generates requests from the gateway's own /openapi.json and
checks every answer against that document: no 5xx; each status code one the operation lists;
the content type, headers and body the document declares for it.

Every operation is tried with valid (positive) and invalid (negative) data. The stack
(serve_all on SQLite plus the gateway, over HTTP) runs on an event loop in a thread of its
own, because schemathesis calls the API synchronously. Generation is derandomized and bounded
per operation, so a run is repeatable and short.

(schemathesis's own pytest integration, `schemathesis.pytest.from_fixture(...).parametrize()`,
does not run under pytest 9: it reads `Function._nodeid`, which pytest 9 no longer has. The
test below drives the same Python API with hypothesis directly.)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from jobtask.gateway import GatewayServer
from jobtask.gateway.openapi import openapi_document
from jobtask.gateway.routing import RouteTable, load_services
from jobtask.gateway.server import SERVICE_MODULES
from jobtask.server.app import Services
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from tests.gateway.conftest import JOB, ROOT_AUTH, start_stack

EXAMPLES_PER_OPERATION = 12
# Watch streams never end: each watch request reads one event, or gives up after this long.
REQUEST_TIMEOUT = 2.0
STREAM_EVENTS = 1
DOCUMENT = openapi_document(RouteTable(load_services(SERVICE_MODULES)))

pytestmark = pytest.mark.timeout(300)


def status_code_is_listed(
    ctx: Any, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    """The status is one the operation lists. (schemathesis's status_code_conformance accepts
    any status once a `default` response exists, as every operation here has.)"""
    listed = set(case.operation.responses.status_codes) - {"default"}
    assert str(response.status_code) in listed, (
        f"{case.operation.label} answered {response.status_code}, not one of {sorted(listed)}:\n"
        f"{response.text[:500]}"
    )


CHECKS = [
    not_a_server_error,
    status_code_is_listed,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class ThreadedStack:
    """A real stack on an event loop of its own, so synchronous clients can call it."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        started = asyncio.run_coroutine_threadsafe(start_stack(tmp_path), self.loop)
        self.services: Services
        self.gateway: GatewayServer
        self.services, self.gateway = started.result(60)
        self.http = httpx.Client(base_url=self.gateway.url, headers=ROOT_AUTH, timeout=20)
        self.made = 0

    def stop(self) -> None:
        self.http.close()

        async def stop() -> None:
            await self.gateway.stop()
            await self.services.stop(0.5)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def _create(self, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        self.made += 1
        response = self.http.post(f"/arvados/v1/{resource}", json=body)
        assert response.status_code == 200, response.text
        created: dict[str, Any] = response.json()
        return created

    def new_uuid(self, resource: str) -> str:
        """A fresh object of `resource` for a generated request to act on (jobs get distinct
        parameters: an identical job would be found instead of created)."""
        job = {"job": {**JOB, "script_parameters": {"n": self.made}}}
        if resource == "jobs":
            return str(self._create("jobs", job)["uuid"])
        if resource == "job_tasks":
            job_uuid = self._create("jobs", job)["uuid"]
            task = {"job_uuid": job_uuid, "sequence": 1, "parameters": {"n": self.made}}
            return str(self._create("job_tasks", {"job_task": task})["uuid"])
        token = {"scopes": ["GET /arvados/v1/jobs"]}
        return str(self._create(resource, {"api_client_authorization": token})["uuid"])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedStack]:
    stack = ThreadedStack(tmp_path_factory.mktemp("schemathesis"))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def gateway_schema(live: ThreadedStack) -> Any:
    """The document the running gateway serves (not DOCUMENT, which only names the tests)."""
    config = schemathesis.Config.from_dict(
        {
            "headers": dict(ROOT_AUTH),
            "request-timeout": REQUEST_TIMEOUT,
            "max-stream-events": STREAM_EVENTS,
        }
    )
    return schemathesis.openapi.from_url(f"{live.gateway.url}/openapi.json", config=config)


def cases() -> list[Any]:
    """(mode, `METHOD /path`) for every documented operation. Invalid data needs something
    that can be invalid: a query parameter, a header or a body (any non-empty string is a
    valid path segment)."""
    out = []
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            out.append(pytest.param(GenerationMode.POSITIVE, label, id=f"positive-{label}"))
            # Nor is any string a header takes (Last-Event-ID of a watch without query
            # parameters, such as /workers/watch).
            params = [
                p
                for p in operation["parameters"]
                if p["in"] != "path"
                and not (p["in"] == "header" and p["schema"] == {"type": "string"})
            ]
            if params or "requestBody" in operation:
                out.append(pytest.param(GenerationMode.NEGATIVE, label, id=f"negative-{label}"))
    return out


@pytest.mark.parametrize(("mode", "label"), cases())
def test_the_gateway_answers_as_its_openapi_document_says(
    mode: GenerationMode, label: str, gateway_schema: Any, live: ThreadedStack
) -> None:
    operation = gateway_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the gateway's /openapi.json"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case[Any]) -> None:
        uuid = (case.path_parameters or {}).get("uuid")
        if isinstance(uuid, str) and len(uuid) % 2 == 0:
            # Half the requests act on a real object, so more than the 404 path is exercised.
            resource = case.path.split("/")[3]
            case.path_parameters = {**(case.path_parameters or {}), "uuid": live.new_uuid(resource)}
        case.call_and_validate(headers=dict(ROOT_AUTH), checks=CHECKS)

    check()
