"""The scope matrix: every RPC of every service, called with tokens of every kind, through
gRPC and through the REST gateway, against one table of expectations.

The table is built from each RPC's google.api.http annotation, so a new RPC (or a new
service file) is covered as soon as its stubs are generated:
- `all`, and for every binding an `exact` scope and a `prefix` scope (the path up to its last
  `/`), are admitted;
- a scope with the wrong method, a wrong path (another object, or another literal path), and
  `[]` are refused with PERMISSION_DENIED / 403 "Forbidden" -- unless the route is one a
  valid token may always call (GET .../api_client_authorizations/current);
- no token, garbage, a wrong secret, an expired token and a revoked one are UNAUTHENTICATED /
  401 "Not logged in".
"Admitted" means the call got past authentication and scopes; what the service then answers
(a job, NOT_FOUND, INVALID_ARGUMENT for an empty request) is not this test's business.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from jobtask.domain.scopes import ALWAYS_ALLOWED
from jobtask.server.auth import HttpBinding, method_rules
from jobtask.v1 import auth_service_pb2, job_service_pb2, task_service_pb2

from tests.auth.conftest import Auth
from tests.conftest import Cluster
from tests.core.helpers import create_job

MODULES = (job_service_pb2, task_service_pb2, auth_service_pb2)
RULES = method_rules(MODULES)
METHODS: list[MethodDescriptor] = [
    method
    for module in MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]
ADMITTED, FORBIDDEN, UNAUTHENTICATED = "admitted", "forbidden", "unauthenticated"
# Objects a request may name but that are not the ones the scopes were made for.
OTHER = {
    "jobs": "zzzzz-8i9sb-zzzzzzzzzzzzzzz",
    "job_tasks": "zzzzz-ot0gb-zzzzzzzzzzzzzzz",
    "api_client_authorizations": "zzzzz-gj3su-zzzzzzzzzzzzzzz",
    "workers": "other-worker",
}
_RESOURCE_VAR = re.compile(r"/arvados/v1/([a-z_]+)/\{([^}=]+)")


def full_name(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def request_for(method: MethodDescriptor, objects: dict[str, str]) -> Message:
    """An empty request but for its path variables, set to the given objects."""
    request = GetMessageClass(method.input_type)()
    for binding in RULES[full_name(method)].bindings:
        for resource, field in _RESOURCE_VAR.findall(binding.template):
            setattr(request, field, objects[resource])
    return request


@dataclass
class Case:
    kind: str
    token: str | None
    expected: str


async def cases_for(auth: Auth, method: MethodDescriptor, request: Message) -> list[Case]:
    rule = RULES[full_name(method)]
    primary = rule.bindings[0]
    always = any(f"{b.method} {b.path(request)}" in ALWAYS_ALLOWED for b in rule.bindings)
    miss = ADMITTED if always else FORBIDDEN
    all_uuid, all_token = await auth.mint(["all"])
    cases = [Case("all", all_token, ADMITTED)]
    for b in rule.bindings:
        path = b.path(request)
        cases.append(
            Case(f"exact {b.method}", (await auth.mint([f"{b.method} {path}"]))[1], ADMITTED)
        )
        prefix = path[: path.rindex("/") + 1]
        cases.append(
            Case(f"prefix {b.method}", (await auth.mint([f"{b.method} {prefix}"]))[1], ADMITTED)
        )
    used = {b.method for b in rule.bindings}
    wrong_method = next(m for m in ("DELETE", "POST", "GET", "PUT") if m not in used)
    cases.append(
        Case(
            "wrong method",
            (await auth.mint([f"{wrong_method} {primary.path(request)}"]))[1],
            miss,
        )
    )
    cases.append(Case("wrong path", (await auth.mint([wrong_path(primary, request)]))[1], miss))
    cases.append(Case("empty", (await auth.mint([]))[1], miss))
    cases.append(Case("expired", await auth.expired(), UNAUTHENTICATED))
    cases.append(Case("revoked", await auth.revoked(), UNAUTHENTICATED))
    cases.append(Case("no token", None, UNAUTHENTICATED))
    cases.append(Case("garbage", "not a token", UNAUTHENTICATED))
    cases.append(Case("wrong secret", f"v2/{all_uuid}/{'0' * 50}", UNAUTHENTICATED))
    return cases


def wrong_path(binding: HttpBinding, request: Message) -> str:
    """The binding's method on another object (or, without variables, another path)."""
    if binding.variables:
        other = request_for(_method_of(binding), OTHER)
        return f"{binding.method} {binding.path(other)}"
    return f"{binding.method} {binding.path(request)}x"


def _method_of(binding: HttpBinding) -> MethodDescriptor:
    for method in METHODS:
        if binding in RULES[full_name(method)].bindings:
            return method
    raise AssertionError(binding)


async def objects_of(cluster: Cluster, auth: Auth) -> dict[str, str]:
    """A job, its seed task, a spare token and a worker for the path variables."""
    job = await cluster.jobs.CreateJob(create_job(script="matrix.py"))
    listing = await cluster.tasks.ListTasks(task_service_pb2.ListTasksRequest())
    (task,) = [t for t in listing.items if t.job_uuid == job.uuid]
    spare, _ = await auth.mint(["all"])
    # A worker in the registry: its first claim records it.
    worker = task_service_pb2.WorkerInfo(worker_id="matrix-worker", node_name="n1")
    await cluster.tasks.ClaimTask(task_service_pb2.ClaimTaskRequest(worker=worker))
    return {
        "jobs": job.uuid,
        "job_tasks": task.uuid,
        "api_client_authorizations": spare,
        "workers": "matrix-worker",
    }


def classify(code: grpc.StatusCode, details: str) -> str:
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return UNAUTHENTICATED if details == "Not logged in" else f"401? {details}"
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return FORBIDDEN if details == "Forbidden" else f"403? {details}"
    return ADMITTED


async def grpc_outcome(
    channel: grpc.aio.Channel, method: MethodDescriptor, request: Message
) -> str:
    path = full_name(method)
    serialize = GetMessageClass(method.input_type).SerializeToString
    deserialize = GetMessageClass(method.output_type).FromString
    try:
        if method.client_streaming:
            factory = channel.stream_stream if method.server_streaming else channel.stream_unary
            call: Any = factory(path, serialize, deserialize)(timeout=10)  # type: ignore[call-arg]  # requests written below
            await call.done_writing()
            await (call.read() if method.server_streaming else call)
        elif method.server_streaming:
            call = channel.unary_stream(path, serialize, deserialize)(request, timeout=10)
            await call.read()
            call.cancel()
        else:
            await channel.unary_unary(path, serialize, deserialize)(request, timeout=10)
    except grpc.aio.AioRpcError as err:
        return classify(err.code(), err.details() or "")
    return ADMITTED


@pytest.mark.parametrize("method", METHODS, ids=[m.full_name for m in METHODS])
async def test_grpc_scope_matrix(cluster: Cluster, auth: Auth, method: MethodDescriptor) -> None:
    request = request_for(method, await objects_of(cluster, auth))
    cases = await cases_for(auth, method, request)
    jobs_side = method.containing_service.name != "TaskService"
    got = {}
    for case in cases:
        stubs = auth.stubs(case.token)
        channel = stubs.jobs_channel if jobs_side else stubs.tasks_channel
        got[case.kind] = await grpc_outcome(channel, method, request)
    assert got == {c.kind: c.expected for c in cases}


# -- the same tokens through the gateway -------------------------------------------------------


@pytest.fixture
async def gateway(cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    from jobtask.gateway.server import serve_gateway

    handle = await serve_gateway("127.0.0.1:0", cluster.jobs_addr, cluster.tasks_addr)
    client = httpx.AsyncClient(base_url=handle.url, timeout=20)
    try:
        yield client
    finally:
        await client.aclose()
        await handle.stop()


def http_classify(response: httpx.Response, head: bool) -> str:
    if response.status_code not in (401, 403):
        return ADMITTED
    errors = None if head else response.json().get("errors")
    if response.status_code == 401:
        return UNAUTHENTICATED if head or errors == ["Not logged in"] else f"401? {errors}"
    return FORBIDDEN if head or errors == ["Forbidden"] else f"403? {errors}"


async def http_outcome(
    client: httpx.AsyncClient, http_method: str, path: str, token: str | None, stream: bool
) -> str:
    # The Arvados Python SDK (<= 2.7) sends OAuth2; the gRPC half of the matrix uses Bearer.
    headers = {"Authorization": f"OAuth2 {token}"} if token else {}
    body: dict[str, Any] | None = {} if http_method in ("POST", "PUT", "PATCH") else None
    if stream:
        async with client.stream(http_method, path, headers=headers) as response:
            if response.status_code in (401, 403):
                await response.aread()
            return http_classify(response, head=http_method == "HEAD")
    response = await client.request(http_method, path, headers=headers, json=body)
    return http_classify(response, head=http_method == "HEAD")


SERVED = [m for m in METHODS if not m.client_streaming]


@pytest.mark.parametrize("method", SERVED, ids=[m.full_name for m in SERVED])
async def test_gateway_scope_matrix(
    cluster: Cluster, auth: Auth, gateway: httpx.AsyncClient, method: MethodDescriptor
) -> None:
    request = request_for(method, await objects_of(cluster, auth))
    cases = await cases_for(auth, method, request)
    got, want = {}, {}
    for binding in RULES[full_name(method)].bindings:
        verbs = [binding.method] + (["HEAD"] if binding.method == "GET" else [])
        for verb in verbs:
            for case in cases:
                key = f"{verb} {case.kind}"
                want[key] = case.expected
                got[key] = await http_outcome(
                    gateway, verb, binding.path(request), case.token, method.server_streaming
                )
    assert got == want
